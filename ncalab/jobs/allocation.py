"""Sharing the machine between the jobs running at once.

torch's OpenMP threads spin while they wait for each other, so two jobs that each use every
core slow each other far more than their share (benchmarks/contention.py: 0.33x each). So
each job takes cores / consumers threads, where consumers are the job processes computing on
this machine (detached jobs and foreground `ncalab run`s of any store: jobs/machine.py) plus
the TUI's live views, and adjusts it while it runs as others start and end. Each job also gets its own
GPUs (CUDA_VISIBLE_DEVICES), chosen when it is started, and a job starts only when the
memory it is expected to hold at its peak fits beside the jobs running (MemoryLedger).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ncalab.errors import NcalabError
from ncalab.jobs import machine
from ncalab.lazy import torch
from ncalab.store.store import RunStore
from ncalab.train.device import apply_requested_threads, request_threads

if TYPE_CHECKING:
    from ncalab.store.interfaces import StoreReader

LIVE_VIEW_S = 15.0  # a live view that has not touched its marker for this long is gone
MEMORY_ENV = "NCALAB_MEMORY"  # the memory the queue may fill (e.g. 12G); default: what is free plus what its jobs hold
MEMORY_MARGIN = 0.1  # of that memory, kept free: expected peaks are estimates


def cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def gpus() -> int:
    try:
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


def threads_for(store: StoreReader, nproc: int = 1, starting: bool = False) -> int:
    """CPU threads per process for a job now: the cores shared by every consumer (the job
    processes computing on this machine, of any store: jobs/machine.py; plus this store's live
    views; `starting` counts a job about to start that has not registered yet)."""
    consumers = max(1, machine.consumers() + live_views(store.home) + (nproc if starting else 0))
    return max(1, cores() // consumers)


def default_max_jobs() -> int:
    """One job per GPU; on a CPU, one per core (each keeps at least one thread, and threads
    follow the number of jobs, so jobs share the cores instead of fighting over them)."""
    return gpus() or cores()


def free_gpus(store: StoreReader, want: int) -> list[int] | None:
    """GPU indices no running job holds (from what each recorded when it started), or None."""
    total = gpus()
    if total == 0 or want == 0:
        return []
    held = set()
    for exp in store.list_experiments(status="running"):
        held.update(int(g) for g in (store.get_meta(f"gpus:{exp.id}") or "").split(",") if g)
    free = [g for g in range(total) if g not in held]
    return free[:want] if len(free) >= want else None


def parse_bytes(text: str) -> float:
    """'12G', '1.5GiB', '800M', '2e9' -> bytes (K, M, G, T are powers of 1024)."""
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = 1024 ** (" KMGT".index(t[-1])) if t and t[-1] in "KMGT" else 1
    try:
        value = float(t[:-1] if scale > 1 else t) * scale
    except ValueError:
        value = -1.0
    if value <= 0:
        raise NcalabError(f"{MEMORY_ENV} must be an amount of memory such as 12G or 800M, got {text!r}")
    return value


def job_resident(pid: int | None) -> float:
    """Bytes a job's process and its children (torchrun's workers) hold resident now; 0 when gone."""
    import psutil

    try:
        proc = psutil.Process(pid) if pid else None
        procs = [proc, *proc.children(recursive=True)] if proc else []
        return float(sum(p.memory_info().rss for p in procs))
    except psutil.Error:
        return 0.0


class MemoryLedger:
    """The memory the queue may still fill: its limit (NCALAB_MEMORY, else what is free now
    plus what the running jobs hold), less what the running and starting jobs hold or are
    expected to hold at their peaks, less a margin. `expected(exp)` gives a job's peak."""

    def __init__(self, running: list, starting: list, expected):
        held = [max(expected(e), job_resident(e.pid)) for e in running] + [expected(e) for e in starting]
        limit = os.environ.get(MEMORY_ENV)
        if limit:
            total = parse_bytes(limit)
        else:
            import psutil

            total = psutil.virtual_memory().available + sum(job_resident(e.pid) for e in running)
        self.free = total * (1 - MEMORY_MARGIN) - sum(held)
        self.idle = not running and not starting

    def take(self, need: float) -> bool:
        """Whether a job expected to hold `need` bytes may start now (then its share is held).
        A job larger than the whole limit still starts when no other runs, or it never would."""
        if need > self.free and not self.idle:
            return False
        self.free -= need
        self.idle = False
        return True


class ThreadGovernor:
    """Keeps a job's torch threads at its share of the cores as other jobs start and end
    (when the user did not pin runtime.threads)."""

    def __init__(self, home: Path, nproc: int = 1):
        self.home, self.nproc, self.current = home, nproc, 0

    def adjust(self, store: StoreReader) -> int:
        """Ask for this job's share now; the training thread takes it before its next step (torch
        and numba keep thread counts per calling thread, so setting them here, in the governor's
        own thread, would change nothing for the thread that trains). Called on the main thread
        (at the start), it also takes it at once."""
        import threading

        want = threads_for(store, self.nproc)
        request_threads(want)
        if threading.current_thread() is threading.main_thread():
            apply_requested_threads()
        self.current = want
        return want

    def follow(self, stop, every_s: float = 5.0) -> None:
        """Adjust now and then every few seconds until `stop` (a threading.Event) is set."""
        import threading

        def loop():
            store = RunStore(self.home)
            try:
                while not stop.wait(every_s):
                    self.adjust(store)
            finally:
                store.close()

        threading.Thread(target=loop, daemon=True, name="ncalab-threads").start()
