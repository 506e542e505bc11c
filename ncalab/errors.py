"""User-facing errors: the CLI and the TUI show their message as one line, never a traceback."""


class NcalabError(Exception):
    """Something the user asked for cannot be done; the message says why and what to do."""
