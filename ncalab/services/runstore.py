"""The run store as the front ends reach it: open it for a `--home`, say which database it is,
copy it to another database, back it up.

The store's ORM is imported inside the functions that open it: `ncalab --help` loads this
module and must stay quick (SQLAlchemy alone costs a tenth of a second); store/location.py, which
says where a store lives, imports nothing heavy.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from ncalab.errors import NcalabError
from ncalab.jobs.queue import reap as mark_lost
from ncalab.store.backup import backup_sqlite
from ncalab.store.location import STORE_ENV, default_home


def open_store(home: Path | str | None = None, *, reap: bool = False):
    """The run store of `home` (default: $NCALAB_HOME, else ./runs); with `reap`, jobs that died
    are marked lost first, so what is shown next is true."""
    from ncalab.store.store import RunStore  # late: keeps SQLAlchemy out of the quick commands

    store = RunStore(home)
    if reap:
        mark_lost(store)
    return store


def home_folder(home: Path | str | None = None) -> Path:
    """The folder a `--home` stands for (default: $NCALAB_HOME, else ./runs), as given."""
    return Path(home if home is not None else default_home())


def cache_folder(home: Path | str | None = None) -> Path:
    """The home's cache folder, created; a home that cannot be written to is one line."""
    cache = home_folder(home) / "cache"
    try:
        cache.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise NcalabError(f"cannot create the cache folder {cache}: {e.strerror or e}; pass --home") from None
    return cache


def use_store_url(url: str) -> None:
    """`--store URL`: checked now (a malformed URL is one line before anything runs), then the
    store of every command and job this process starts."""
    from ncalab.store.connection import store_url  # late: keeps SQLAlchemy out of the quick commands

    store_url(Path("."), url)
    os.environ[STORE_ENV] = url


def use_home(home: Path) -> None:
    """`ncalab --home DIR`: the run store folder of the TUI and of every command this process
    runs (a command's own --home still wins), as NCALAB_HOME would set it."""
    os.environ["NCALAB_HOME"] = str(Path(home).expanduser())


def masked(text: str) -> str:
    """A text with any database password in it masked (an unexpected error's, before it is shown)."""
    from ncalab.store.connection import mask  # late: keeps SQLAlchemy out of the quick commands

    return mask(text)


def store_info(home: Path | str | None = None) -> dict:
    """Which database the store is (never its password), its schema, and its fingerprint."""
    with open_store(home) as store:
        fp = store.fingerprint()
        return {"database": store.where, "backend": store.backend.name, "home": str(store.home),
                "schema_version": store.get_meta("schema_version"), **fp}


def copy_store_to(home: Path | str | None, to: str) -> tuple[dict, Path]:
    """Copy every row into the empty database `to`, verified: the copy's record (with the seconds it
    took and where from), and the home folder the run folders stay in."""
    from ncalab.store.transfer import copy_store  # late: keeps SQLAlchemy out of the quick commands

    with open_store(home) as store:
        t = time.perf_counter()
        result = copy_store(store, to)
        result["seconds"] = round(time.perf_counter() - t, 2)
        result["from"] = store.where
    return result, store.home


def backup_store(home: Path | str | None, path: Path) -> dict:
    """A verified copy of an SQLite store at `path` (a new file, or a folder for ncalab-<time>.db),
    taken while jobs write to it: from, to, seconds and the copy's fingerprint."""
    from ncalab.store.connection import store_url  # late: keeps SQLAlchemy out of the quick commands

    url = store_url(home_folder(home).expanduser().resolve())
    if url.get_backend_name() != "sqlite":
        raise NcalabError("`ncalab store backup` copies an SQLite store; back up a PostgreSQL one with the server's "
                          "pg_dump, or copy it to a file with `ncalab store copy --to PATH`")
    db = Path(url.database or "")
    if not db.is_file():
        raise NcalabError(f"no run store at {db}")
    dest = path.expanduser().resolve()
    if dest.is_dir():
        dest = dest / f"ncalab-{time.strftime('%Y%m%d-%H%M%S')}.db"
    t = time.perf_counter()
    fp = backup_sqlite(db, dest)
    return {"from": str(db), "to": str(dest), "seconds": round(time.perf_counter() - t, 2), **fp}
