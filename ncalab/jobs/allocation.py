"""Sharing the machine between the jobs running at once.

torch's OpenMP threads spin while they wait for each other, so two jobs that each use every
core slow each other far more than their share (benchmarks/contention.py: 0.33x each). So
each job takes cores / consumers threads, where consumers are the experiments running
(detached jobs and foreground `ncalab run`s, all claimed in the store) plus the TUI's live
views, and adjusts it while it runs as others start and end. Each job also gets its own
GPUs (CUDA_VISIBLE_DEVICES), chosen when it is started.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

LIVE_VIEW_S = 15.0  # a live view that has not touched its marker for this long is gone


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def gpus() -> int:
    try:
        import torch

        return torch.cuda.device_count()
    except Exception:  # noqa: BLE001
        return 0


def live_views(home: Path) -> int:
    """TUI screens animating a rule right now (each touches a marker file while it plays)."""
    folder = Path(home) / "live"
    if not folder.is_dir():
        return 0
    now, n = time.time(), 0
    for f in folder.iterdir():
        try:
            if now - f.stat().st_mtime < LIVE_VIEW_S:
                n += 1
        except OSError:
            continue
    return n


def mark_live_view(home: Path, playing: bool = True) -> None:
    """Called by a live view every few seconds: while it plays it counts as a consumer; when it
    stops (or closes) its marker goes at once. Nothing is created where no store exists yet."""
    marker = Path(home) / "live" / str(os.getpid())
    try:
        if not playing:
            marker.unlink(missing_ok=True)
        elif Path(home).is_dir():
            marker.parent.mkdir(exist_ok=True)
            marker.touch()
    except OSError:
        pass  # a read-only store: the view simply does not count


def threads_for(store, nproc: int = 1, starting: bool = False) -> int:
    """CPU threads per process for a job now: the cores shared by every consumer (the
    experiments running, each counted once per process, plus live views; `starting` counts a
    job about to start that is not marked running yet)."""
    running = sum(max(1, _nproc(e)) for e in store.list_experiments(status="running"))
    consumers = max(1, running + live_views(store.home) + (nproc if starting else 0))
    return max(1, cores() // consumers)


def _nproc(exp) -> int:
    from ncalab.config.stored import stored_runtime

    return stored_runtime(exp.config).nproc


def default_max_jobs() -> int:
    """One job per GPU; on a CPU, one per core (each keeps at least one thread, and threads
    follow the number of jobs, so jobs share the cores instead of fighting over them)."""
    return gpus() or cores()


def free_gpus(store, want: int) -> list[int] | None:
    """GPU indices no running job holds (from what each recorded when it started), or None."""
    total = gpus()
    if total == 0 or want == 0:
        return []
    held = set()
    for exp in store.list_experiments(status="running"):
        held.update(int(g) for g in (store.get_meta(f"gpus:{exp.id}") or "").split(",") if g)
    free = [g for g in range(total) if g not in held]
    return free[:want] if len(free) >= want else None


class ThreadGovernor:
    """Keeps a job's torch threads at its share of the cores as other jobs start and end
    (when the user did not pin runtime.threads)."""

    def __init__(self, home: Path, nproc: int = 1):
        self.home, self.nproc, self.current = home, nproc, 0

    def adjust(self, store) -> int:
        import torch

        want = threads_for(store, self.nproc)
        if want != self.current:
            torch.set_num_threads(want)
            self.current = want
        return want

    def follow(self, stop, every_s: float = 5.0) -> None:
        """Adjust now and then every few seconds until `stop` (a threading.Event) is set."""
        import threading

        from ncalab.store import RunStore

        def loop():
            store = RunStore(self.home)
            try:
                while not stop.wait(every_s):
                    self.adjust(store)
            finally:
                store.close()

        threading.Thread(target=loop, daemon=True, name="ncalab-threads").start()
