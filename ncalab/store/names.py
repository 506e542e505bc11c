"""The store's fixed words: the statuses of experiments and runs, and the kinds of runs (here,
apart from the tables, so a command that only lists can check them without the ORM)."""

from __future__ import annotations

import re

STATUSES = ("queued", "running", "completed", "failed", "cancelled", "lost")
FINAL_STATUSES = ("completed", "failed", "cancelled", "lost")
RUN_KINDS = ("stage1", "nca", "scratch")  # the training runs of every experiment
# Later stages add runs named after them: "<task>-ft-<arm>" (fine-tuning), "<task>-<arm>" (evaluation).
RUN_KIND = re.compile(r"^[a-z0-9_]+(-ft)?-(nca|scratch)$")
