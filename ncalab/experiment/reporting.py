"""How a running experiment reports: the CLI draws progress bars, the job writes log lines,
tests stay silent. The pipeline never prints."""

from __future__ import annotations

from typing import Protocol


class Reporter(Protocol):
    """A stage counts tokens while it trains and items while it evaluates (``unit``); an
    evaluation's metrics are the samples scored so far and how many were correct."""

    def stage(self, name: str, total: int, unit: str = "tokens") -> None: ...
    def progress(self, name: str, done: int, metrics: dict) -> None: ...
    def done(self, name: str, result: dict) -> None: ...
    def note(self, text: str) -> None: ...


class SilentReporter:
    def stage(self, name, total, unit="tokens"):
        pass

    def progress(self, name, done, metrics):
        pass

    def done(self, name, result):
        pass

    def note(self, text):
        pass


def scored_text(metrics: dict) -> str:
    """An evaluation's progress: samples scored so far and how many were correct."""
    return f"{metrics['correct']:,} of {metrics['samples']:,} samples correct"
