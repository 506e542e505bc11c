"""User-facing errors: the CLI and the TUI show their message as one line, never a traceback."""


class NcalabError(Exception):
    """Something the user asked for cannot be done; the message says why and what to do."""


class Stopped(Exception):
    """The job was asked to stop; the running stage has checkpointed (or had not started).
    Not an error: the runner records the stage as cancelled and the job resumes it later."""
