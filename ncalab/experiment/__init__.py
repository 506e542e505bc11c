"""Running an experiment: the runner (pipeline.py), its stages in order (stages.py), the
shorter budgets as cooldown branches (budgets.py), reuse keys (reuse.py), presets, the
comparison of the arms (summary.py) and the mirrors to external trackers (tracking.py)."""
