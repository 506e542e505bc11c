"""Copies of a store that can be trusted: the online backup of an SQLite store while jobs write
to it, the fingerprint (row counts and a checksum of the metric points) that verifies a copy,
and the record of backups that a damaged store's message points to."""

from __future__ import annotations

import hashlib
import os
import sqlite3
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from urllib.parse import quote

from ncalab.durable import fsync_file
from ncalab.errors import NcalabError

# Every table of the store, parents before children (the order a copy fills them in).
TABLE_ORDER = ("store_meta", "sweeps", "experiments", "runs", "metric_points", "latest_metrics", "eval_items")
_POINTS = "SELECT run_id, name, step, tokens, wall_time, value FROM metric_points ORDER BY id"


def _cell(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return repr(v)
    return str(v)


def fingerprint(execute: Callable[[str], Iterable]) -> dict:
    """Row counts of every table and a SHA-256 of every metric point (in id order), through
    ``execute(sql) -> rows`` (any connection, either database), so two copies compare equal
    exactly when they hold the same rows."""
    counts = {t: int(next(iter(execute(f"SELECT count(*) FROM {t}")))[0]) for t in TABLE_ORDER}
    h = hashlib.sha256()
    for row in execute(_POINTS):
        h.update(("\x1f".join(_cell(v) for v in row) + "\n").encode())
    return {"rows": counts, "points_sha256": h.hexdigest()}


# ---- the record of backups ------------------------------------------------------------------

def _record(db_path: Path) -> Path:
    return db_path.with_name(db_path.name + ".backups")


def record_backup(db_path: Path, dest: Path) -> None:
    """Note a verified backup beside the store (one line: unix time, path), for `damaged` to name."""
    with open(_record(db_path), "a") as f:
        f.write(f"{time.time():.0f}\t{dest}\n")


def latest_backup(db_path: Path) -> Path | None:
    """The newest recorded backup that still exists."""
    try:
        lines = _record(db_path).read_text().splitlines()
    except OSError:
        return None
    for line in reversed(lines):
        path = Path(line.partition("\t")[2])
        if line and path.is_file():
            return path
    return None


def damaged(db_path: Path, cause: str) -> str:
    """The one line every command says when the store's file is damaged: the cause, that nothing
    was written to it, and the backup to restore."""
    backup = latest_backup(db_path)
    if backup is not None:
        fix = f"restore the backup {backup} (move the damaged file aside, then copy the backup to {db_path})"
    else:
        fix = "no backup of it is recorded (`ncalab store backup PATH` makes one); keep the file for repair"
    return f"the run store {db_path} is damaged ({cause}); nothing was written to it: {fix}"


# ---- the online backup of an SQLite store -----------------------------------------------------

def _connect_ro(path: Path) -> sqlite3.Connection:
    con = sqlite3.connect(f"file:{quote(str(path))}?mode=ro", uri=True, timeout=30, isolation_level=None)
    con.execute("PRAGMA busy_timeout=30000")
    return con


def backup_sqlite(db_path: Path, dest: Path) -> dict:
    """A consistent copy of the SQLite store at ``db_path`` in ``dest`` (a new file), taken with
    SQLite's online backup API in one read snapshot: writers go on meanwhile (WAL), and what is
    copied is the store as of one instant. Verified (integrity check, row counts and the metric
    points' checksum against the same snapshot) before it is moved into place; returns the
    fingerprint."""
    if dest.exists():
        raise NcalabError(f"{dest} exists; a backup never overwrites a file (choose a new path)")
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NcalabError(f"cannot create {dest.parent}: {e.strerror or e}") from None
    tmp = dest.with_name(dest.name + f".partial-{os.getpid()}")
    src, done = _connect_ro(db_path), False
    try:
        src.execute("BEGIN")  # one snapshot for the fingerprint and the copy: the backup reuses it
        want = fingerprint(src.execute)
        out = sqlite3.connect(tmp)
        try:
            src.backup(out)
            out.execute("PRAGMA journal_mode=DELETE")  # a single self-contained file
            check = out.execute("PRAGMA integrity_check").fetchone()[0]
            got = fingerprint(out.execute)
        finally:
            out.close()
        src.execute("COMMIT")
        if check != "ok" or got != want:
            raise NcalabError(f"the backup of {db_path} did not match the store ({check}); nothing was written")
        fsync_file(tmp)
        os.replace(tmp, dest)
        done = True
    except sqlite3.Error as e:
        if getattr(e, "sqlite_errorname", "") in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            raise NcalabError(damaged(db_path, str(e))) from None
        raise NcalabError(f"cannot back up {db_path}: {e}") from None
    except OSError as e:
        raise NcalabError(f"cannot write the backup {dest}: {e.strerror or e}") from None
    finally:
        src.close()
        if not done:
            tmp.unlink(missing_ok=True)
    record_backup(db_path, dest.resolve())
    return want
