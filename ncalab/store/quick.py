"""A read-only look at an SQLite store through the standard library's sqlite3, for the commands
that only list experiments (`ncalab runs list`): importing the ORM takes longer than the listing.

It reads only what this version of ncalab wrote: for a store of another schema version, a
PostgreSQL store, a missing or unreadable file, it declines (returns None) and the caller opens
the store itself, which upgrades, reports or creates as usual.
"""

from __future__ import annotations

import os
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from ncalab.store.location import DB_NAME, STORE_ENV
from ncalab.store.migrations import SCHEMA_VERSION


@dataclass(frozen=True)
class ListedExperiment:
    """The columns of an experiment a listing shows and the queue's liveness check reads (the
    names of the ORM's Experiment, so code that reads one reads the other)."""

    id: str
    name: str | None
    preset: str
    scale: str
    seed: int
    status: str
    created_at: float
    started_at: float | None
    finished_at: float | None
    summary_json: str | None
    sweep_id: str | None
    tags_json: str
    pid: int | None
    host: str | None
    heartbeat_at: float | None


COLUMNS = tuple(ListedExperiment.__dataclass_fields__)


def list_experiments(home: Path, status: str | None = None, preset: str | None = None) -> list[ListedExperiment] | None:
    """Experiments newest first (rowid breaks ties, as the store orders them), or None where this
    reader declines (see the module's docstring)."""
    if (os.environ.get(STORE_ENV) or "").strip():
        return None
    path = Path(home).expanduser() / DB_NAME
    if not path.is_file():
        return None
    where = [f"{name} = ?" for name, value in (("status", status), ("preset", preset)) if value is not None]
    query = (f"SELECT {', '.join(COLUMNS)} FROM experiments" + (f" WHERE {' AND '.join(where)}" if where else "")
             + " ORDER BY created_at DESC, rowid DESC")
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30) as db:
            version = db.execute("SELECT value FROM store_meta WHERE key = 'schema_version'").fetchone()
            if version is None or int(version[0]) != SCHEMA_VERSION:
                return None
            rows = db.execute(query, [v for v in (status, preset) if v is not None]).fetchall()
    except (sqlite3.Error, ValueError):
        return None
    return [ListedExperiment(*row) for row in rows]
