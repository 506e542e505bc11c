"""Where a store lives: its home folder and, for SQLite, its database file; light enough for
the commands that only read (no ORM is imported here)."""

from __future__ import annotations

import os
from pathlib import Path

DB_NAME = "ncalab.db"
STORE_ENV = "NCALAB_STORE"  # a database URL; unset: the SQLite file DB_NAME in the home folder


def default_home() -> Path:
    """``$NCALAB_HOME``, else ``./runs`` (relative to the current directory)."""
    return Path(os.environ.get("NCALAB_HOME") or "runs")
