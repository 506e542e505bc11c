"""What a front end that stays open beside running jobs needs (the terminal lab: open for hours
or days): the store read-only for its refreshes, whether a store exists yet (looking never
creates one), marking dead jobs lost on a timer, and marking a live view that plays (it keeps a
CPU core busy, so the job queue counts it).

The app imports this module before its first frame: the store's and the queue's imports stay
inside the functions (SQLAlchemy alone costs a tenth of a second).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store


def store_exists(home: Path) -> bool:
    """Whether anything has created the store at `home` yet; a database server (NCALAB_STORE) is
    always there."""
    from ncalab.store.connection import store_exists as exists  # late: keeps SQLAlchemy out of the first frame

    return exists(home)


def open_reader(home: Path):
    """The store at `home` read-only (SQLite read-only, no schema transaction, a pool of reused
    connections): what a view that re-reads every few seconds reads through."""
    from ncalab.store.store import RunStore  # late: keeps SQLAlchemy out of the first frame

    return RunStore(home, readonly=True)


def reap_lost(store: Store) -> list[str]:
    """Mark running experiments whose job is gone as lost; the ids marked."""
    from ncalab.jobs.queue import reap  # late: imported by load_job_queue in a worker, after the first frame

    return reap(store)


def load_job_queue() -> None:
    """Import the job queue's modules now (from a worker), so the screens' first use does not wait."""
    import ncalab.jobs.queue  # noqa: F401  (late: the point of this function)


def mark_live_view(home: Path, playing: bool = True) -> None:
    """Renew (playing) or remove (paused, closed) this process's live-view mark under `home`;
    nothing is created where no store exists yet."""
    from ncalab.jobs.allocation import mark_live_view as mark  # late: keeps torch, SQLAlchemy out of the first frame

    mark(home, playing)
