"""What a front end shows of an experiment running in its process: the reporter it hands the
stages (ncalab.reporting's protocol, and the one that shows nothing), the text of one progress
event, and each stage's label."""

from __future__ import annotations

from ncalab import plugins
from ncalab.reporting import Reporter, SilentReporter, progress_text

__all__ = ["Reporter", "SilentReporter", "progress_text", "stage_labels"]


def stage_labels(source: str) -> dict[str, str]:
    """The label of each stage's progress bar, named after the stage-1 source (a plugin's own label)."""
    short = getattr(plugins.load(source), "label", source)
    return {"stage1": f"stage 1  {short}", "nca": f"stage 2  {short}-init", "scratch": "stage 2  scratch"}
