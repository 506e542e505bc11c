"""How a running experiment reports: the CLI draws progress bars, the job writes log lines,
tests stay silent. The pipeline never prints."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    def stage(self, name: str, total_tokens: int) -> None: ...
    def progress(self, name: str, tokens: int, metrics: dict) -> None: ...
    def done(self, name: str, result: dict) -> None: ...
    def note(self, text: str) -> None: ...


class SilentReporter:
    def stage(self, name, total_tokens):
        pass

    def progress(self, name, tokens, metrics):
        pass

    def done(self, name, result):
        pass

    def note(self, text):
        pass
