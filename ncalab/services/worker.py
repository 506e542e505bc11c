"""The background job of one experiment, as the job process runs it (`ncalab.cli.job` only
parses its arguments and calls `run_job`).

It claims the experiment, trains it (continuing from checkpoints), stops gracefully on
SIGTERM (checkpoint first), keeps a heartbeat, keeps its CPU threads at its share of the
machine, logs to the experiment's job.log, and when it ends starts the next queued
experiments. Under torchrun only the first process writes to the store and the log; the
experiment records torchrun's own pid, so a cancel signals its whole process group and the
death of any process ends in "lost".
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ncalab.config.stored import stored_config
from ncalab.errors import NcalabError
from ncalab.jobs import machine, queue
from ncalab.jobs.allocation import ThreadGovernor, job_resident
from ncalab.jobs.oom import record
from ncalab.jobs.slurm import REQUEUE
from ncalab.reporting import Reporter, SilentReporter, progress_text
from ncalab.services.experiments import execute
from ncalab.store.store import RunStore
from ncalab.train.distributed import from_environment, shutdown
from ncalab.train.memory import lifetime_peak

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store
    from ncalab.train.distributed import World


class LogReporter:
    """Plain lines for job.log: stage starts and ends, and progress every few seconds."""

    def __init__(self, every_s: float = 10.0):
        self.every_s, self._last = every_s, 0.0
        self.totals: dict[str, tuple[int, str]] = {}

    def _print(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)

    def stage(self, name, total, unit="tokens"):
        self.totals[name] = (total, unit)
        self._print(f"[{name}] started: {total:,} {unit}")

    def progress(self, event):
        now = time.time()
        if now - self._last < self.every_s:
            return
        self._last = now
        total, unit = self.totals.get(event.stage, (0, "tokens"))
        self._print(f"[{event.stage}] {event.done:,}/{total:,} {unit}  {progress_text(event)}")

    def done(self, name, result):
        self._print(f"[{name}] done")

    def note(self, text):
        self._print(text)


@dataclass
class JobSession:
    """A claimed experiment's job: its stop request, the log, and its thread share."""

    store: RunStore
    exp_id: str
    world: World
    stop: threading.Event
    log: Reporter
    threads_note: str


@contextmanager
def job_session(home: str, exp_id: str, world) -> Iterator[JobSession | None]:
    """Claim the experiment (None when another job has it or no slot is free), then hold its
    signals, thread share and heartbeat until the job ends; afterwards start what waits."""
    store = RunStore(home)
    if not world.broadcast(_claim(store, exp_id, world)):
        yield None
        return
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    cfg = stored_config(store.get_experiment(exp_id).config)
    machine.register()  # it computes on this machine from now on: other stores' jobs count it too
    governor = ThreadGovernor(store.home, world.size)
    if not cfg.runtime.threads:
        governor.adjust(store)
        governor.follow(stop)
    if world.main:
        threading.Thread(target=_beat, args=(home, exp_id, stop), daemon=True).start()
    log = LogReporter() if world.main else SilentReporter()
    note = "" if cfg.runtime.threads else f"; {governor.current} CPU threads (its share, adjusted as jobs start and end)"
    try:
        yield JobSession(store, exp_id, world, stop, log, note)
    finally:
        stop.set()
        machine.unregister()
        _start_waiting(store, world, log)


def _claim(store: Store, exp_id: str, world) -> bool:
    if not world.main:
        return False
    launcher = os.getppid() if world.distributed else os.getpid()  # what cancel signals and reap watches
    local = stored_config(store.get_experiment(exp_id).config).runtime.executor == "local"
    claimed = store.claim_experiment(exp_id, launcher, socket.gethostname(),
                                     queue.max_jobs(store) if local else None)  # a cluster allocates its own
    queue.started(store, exp_id)  # no longer a job starting: a later resume may start another
    return claimed


def _beat(home: str, exp_id: str, stop: threading.Event) -> None:
    """Every few seconds: the heartbeat, and what a job killed for memory leaves behind (the
    most it held, its cgroup's kill count: jobs/oom.py)."""
    beat_store, peak = RunStore(home), [0.0]
    launcher = beat_store.get_experiment(exp_id).pid  # torchrun's, whose workers it counts too

    def note_memory() -> None:
        peak[0] = max(peak[0], job_resident(launcher), lifetime_peak())
        record(beat_store, exp_id, peak[0])

    note_memory()
    while not stop.wait(queue.HEARTBEAT_S):
        beat_store.touch_experiment(exp_id)
        note_memory()


def _start_waiting(store: Store, world, log) -> None:
    try:
        if world.main:
            queue.schedule(store)  # free slot: start whatever waits
    except Exception as e:  # noqa: BLE001
        log.note(f"could not start queued jobs: {e}")


def run_job(home: str, exp_id: str) -> int:
    """The job of one experiment in this process (one of torchrun's, under torchrun); 0 when
    it completed, was cancelled or was not this job's to run, 1 when it failed."""
    world = from_environment()  # a world of one unless torchrun started this process
    try:
        with job_session(home, exp_id, world) as job:
            return 0 if job is None else _run_claimed(job)
    finally:
        shutdown(world)


def _run_claimed(job: JobSession) -> int:
    log, world = job.log, job.world
    log.note(f"job {os.getpid()} on {socket.gethostname()} started experiment {job.exp_id}"
             + (f" ({world.size} processes)" if world.distributed else "") + job.threads_note)
    try:
        summary = execute(job.store, job.exp_id, log, should_stop=job.stop.is_set, world=world)
    except SystemExit:
        raise  # submitit's requeue after a time limit or preemption exits with its own code
    except NcalabError as e:
        log.note(f"failed: {e}")
        return 1
    except BaseException as e:  # noqa: BLE001 - the status is stored; the traceback goes to the log
        if REQUEUE.is_set():
            raise  # submitit's requeue signal, surfacing as another error from compiled code: let it requeue
        import traceback

        traceback.print_exc()
        ended = job.store.get_experiment(job.exp_id).status if world.main else "failed"  # "lost": a process died
        log.note(f"{ended}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        return 1
    if summary is None:
        log.note("cancelled: checkpoint written; `ncalab runs resume` continues it")
    else:
        log.note(f"completed: ppl scratch {summary.ppl_scratch:.3f}, ppl nca {summary.ppl_nca:.3f}, "
                 f"gain {summary.gain:+.4f}")
    return 0
