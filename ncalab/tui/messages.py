"""The messages more than one screen posts. Every result a worker thread has goes back to the UI
thread as a Message (a screen's own results are its own Message subclasses), handled there by an
`on` handler: a worker never calls into the widgets itself."""

from __future__ import annotations

from textual.message import Message
from textual.notifications import SeverityLevel


class Notice(Message):
    """A line for the user from a worker (a job's new status, a report written, what went
    wrong): it bubbles up to the app, which shows it as a notification."""

    def __init__(self, text: str, severity: SeverityLevel = "information", timeout: float | None = None) -> None:
        super().__init__()
        self.text, self.severity, self.timeout = text, severity, timeout


class StoreWritten(Message):
    """A worker's write to the store has ended (a cancel, resume, tag or delete of ``ident``,
    done or refused): the screen reads the store again."""

    def __init__(self, ident: str, what: str) -> None:
        super().__init__()
        self.ident, self.what = ident, what
