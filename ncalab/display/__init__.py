"""What the CLI and the TUI both draw: rich tables, plotext plots and NCA grids.

Above the services (it renders their results), below both front ends.
"""
