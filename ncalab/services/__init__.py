"""The service layer: what the CLI and the TUI both call. No printing, no UI imports."""
