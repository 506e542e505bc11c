"""What stage 1 trains on: the interface every source keeps and the registry (interface.py),
the easy base for a new source (sequence.py), ncalab's own sources (nca, dyck, text, eca, ww),
the controls that wrap any source (controls.py) and the saved rule families (families.py)."""
