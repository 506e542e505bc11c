"""Cancel, resume and follow jobs."""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from ncalab.errors import NcalabError
from ncalab.jobs import queue, slurm
from ncalab.train import checkpoint

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store, StoreReader


def cancel(store: Store, exp_id: str, wait: float = 120.0) -> str:
    exp = store.get_experiment(exp_id)
    if exp.status == "queued":
        if slurm.job_of(store, exp_id) is not None:
            slurm.cancel(store, exp_id)  # pending on the cluster
        store.finish_experiment(exp_id, "cancelled")
        return "cancelled"
    if exp.status != "running":
        raise NcalabError(f"experiment {exp_id} is {exp.status}, not running or queued")
    if not queue.pid_alive(exp.pid):
        queue.reap(store)
        raise NcalabError(f"the job of {exp_id} is gone; it is now marked lost (resume it with `ncalab runs resume`)")

    if slurm.job_of(store, exp_id) is not None:
        slurm.cancel(store, exp_id)  # scancel (the job checkpoints on the signal Slurm sends first)
    else:
        queue.signal_job(exp.pid, signal.SIGTERM)  # the job checkpoints, then marks itself cancelled
    return queue.wait_until(store, exp_id, ("cancelled", "completed", "failed", "lost"), wait)


def requeue(store: Store, exp_id: str) -> None:
    """Put a cancelled, failed or lost experiment back in the queue (services.launch.resume
    then starts it); refused for one that completed, runs or has an unreadable checkpoint."""
    exp = store.get_experiment(exp_id)
    if exp.status == "completed":
        raise NcalabError(f"experiment {exp_id} already completed; there is nothing to resume")
    if exp.status in ("running", "queued"):
        raise NcalabError(f"experiment {exp_id} is {exp.status}; only cancelled, failed or lost ones resume")
    check_checkpoints(store, exp_id)
    store.requeue_experiment(exp_id)
    store.set_meta(f"slurm:{exp_id}", "")  # a cluster experiment is submitted again


def check_checkpoints(store: StoreReader, exp_id: str) -> None:
    """Refuse, before anything is queued, a checkpoint the job could not resume from: one that
    would run code when loaded (a pickle planted in a shared run folder) or a damaged one."""
    for run in store.runs_of(exp_id):
        if run.status != "completed":
            found = checkpoint.find(store.run_dir(run) / "checkpoints" / "last")
            if found is not None:
                checkpoint.check_readable(found)


def follow_log(store: Store, exp_id: str, follow: bool = True, poll: float = 0.5) -> Iterator[str]:
    """Lines of the job log; with ``follow``, new lines until the experiment is no longer
    queued or running."""
    path = queue.log_path(store, exp_id)
    pos = 0
    while True:
        if path.exists():
            with open(path, errors="replace") as f:
                f.seek(pos)
                chunk = f.read()
                pos = f.tell()
            if chunk:
                yield from chunk.splitlines(keepends=True)
        if not follow:
            return
        queue.reap(store)
        if store.get_experiment(exp_id).status not in ("queued", "running"):
            if path.exists() and path.stat().st_size > pos:
                continue  # drain what the job wrote last
            return
        time.sleep(poll)
