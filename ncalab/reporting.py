"""How a running experiment reports: the CLI draws progress bars, the job writes log lines,
tests stay silent. The pipeline never prints."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class TrainingProgress:
    """A training stage has trained ``done`` tokens; its latest metrics."""

    stage: str
    done: int
    train_loss: float
    tokens_per_s: float
    val_loss: float | None = None
    val_ppl: float | None = None

    @classmethod
    def of(cls, stage: str, tokens: int, metrics: dict) -> TrainingProgress:
        return cls(stage, tokens, metrics.get("train_loss", float("nan")), metrics.get("tokens_per_s", 0.0),
                   metrics.get("val_loss"), metrics.get("val_ppl"))


@dataclass(frozen=True)
class EvaluationProgress:
    """An evaluation has scored ``done`` items: ``samples`` samples, ``correct`` of them correct."""

    stage: str
    done: int
    samples: int
    correct: int


ProgressEvent = TrainingProgress | EvaluationProgress


def progress_text(event: ProgressEvent) -> str:
    """The one way progress reads, in the job log, the progress bars and the TUI."""
    if isinstance(event, EvaluationProgress):
        return f"{event.correct:,} of {event.samples:,} samples correct"
    bits = [f"loss {event.train_loss:.3f}"]
    if event.val_ppl is not None and event.stage != "stage1":  # stage 1's perplexity is over NCA tokens
        bits.append(f"val ppl {event.val_ppl:.2f}")
    elif event.val_loss is not None:
        bits.append(f"val loss {event.val_loss:.3f}")
    bits.append(f"{event.tokens_per_s:,.0f} tok/s")
    return "  ".join(bits)


class Reporter(Protocol):
    """A stage counts tokens while it trains and items while it evaluates (``unit``)."""

    def stage(self, name: str, total: int, unit: str = "tokens") -> None: ...
    def progress(self, event: ProgressEvent) -> None: ...
    def done(self, name: str, result: dict) -> None: ...
    def note(self, text: str) -> None: ...


class SilentReporter:
    def stage(self, name, total, unit="tokens"):
        pass

    def progress(self, event):
        pass

    def done(self, name, result):
        pass

    def note(self, text):
        pass

