"""The job queue as the front ends drive it: how many jobs at once, starting queued members
(on this machine or as one Slurm job array), a job's log, cancelling, and watching a sweep.

The queue itself is ncalab.jobs; these are the calls a command makes of it. Its imports stay
inside the functions so that `ncalab --help` does not pay for them.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ncalab.jobs import control, queue, slurm

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store


def set_max_jobs(store: Store, n: int) -> None:
    """`--max-jobs N`: background jobs at once, stored for every later command and job."""
    queue.set_max_jobs(store, n)


def schedule(store: Store) -> list[str]:
    """Start queued experiments while slots and memory are free; the ids started."""
    return queue.schedule(store)


def start_members(store: Store, exp_ids: list[str], base, max_jobs: int | None = None) -> None:
    """Start the members of a sweep or study just recorded: on a cluster they go together, as one
    job array (at most `max_jobs` at once); the queue then starts what fits here."""
    if base.runtime.executor != "local":
        slurm.submit(store, exp_ids, base, parallelism=max_jobs or 0)
    schedule(store)


def log_path(store: Store, exp_id: str) -> Path:
    """Where an experiment's job writes its log."""
    return queue.log_path(store, exp_id)


def cancel(store: Store, exp_id: str, wait: float = 120.0) -> str:
    """Stop an experiment gracefully (its job checkpoints first); its status afterwards."""
    return control.cancel(store, exp_id, wait)


def follow_log(store: Store, exp_id: str, follow: bool = True) -> Iterator[str]:
    """The lines of an experiment's job log; with `follow`, new ones until the job ends."""
    return control.follow_log(store, exp_id, follow)


@dataclass(frozen=True)
class MembersProgress:
    """Where a sweep's (or study's) members stand, for a progress bar."""

    total: int
    ended: int
    running: str | None  # the name of one running member

    @property
    def done(self) -> bool:
        return self.ended == self.total


def members_progress(store: Store, sweep_id: str) -> MembersProgress:
    """One look at a sweep's members while they run: dead jobs are marked lost first, and when
    nothing runs yet something waits (a slot freed without a start), the queue is started."""
    queue.reap(store)
    exps = store.experiments_of_sweep(sweep_id)
    ended = [e for e in exps if e.status not in ("queued", "running")]
    running = [e for e in exps if e.status == "running"]
    if running or len(ended) == len(exps):
        return MembersProgress(len(exps), len(ended), running[0].name if running else None)
    queue.schedule(store)
    return MembersProgress(len(exps), len(ended), None)
