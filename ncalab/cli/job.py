"""The job process of one experiment: `python -m ncalab.cli.job --home H EXP_ID`, or each
process of a multi-process job under `torchrun --standalone --nproc-per-node N -m ncalab.cli.job`.

It claims the experiment, trains it (continuing from checkpoints), stops gracefully on
SIGTERM (checkpoint first), keeps a heartbeat, keeps its CPU threads at its share of the
machine, logs to the experiment's job.log, and when it ends starts the next queued
experiments. Under torchrun only the first process writes to the store and the log; the
experiment records torchrun's own pid, so a cancel signals its whole process group and the
death of any process ends in "lost".
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time

from ncalab.cli.quiet import quiet_third_party, verbose_requested
from ncalab.errors import NcalabError
from ncalab.experiment.reporting import progress_text
from ncalab.jobs import queue


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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ncalab-job")
    ap.add_argument("--home", required=True)
    ap.add_argument("experiment")
    args = ap.parse_args(argv)
    quiet_third_party(verbose_requested())  # the log keeps ncalab's lines only, unless --verbose started it

    from ncalab.experiment.reporting import SilentReporter
    from ncalab.jobs.allocation import ThreadGovernor
    from ncalab.services.experiments import execute
    from ncalab.store import RunStore
    from ncalab.train.distributed import from_environment, shutdown

    world = from_environment()  # a world of one unless torchrun started this process
    store = RunStore(args.home)
    claimed = False
    if world.main:
        launcher = os.getppid() if world.distributed else os.getpid()  # what cancel signals and reap watches
        local = config_value(store, args.experiment, "executor", "local") == "local"
        claimed = store.claim_experiment(args.experiment, launcher, socket.gethostname(),
                                         queue.max_jobs(store) if local else None)  # a cluster allocates its own
        queue.started(store, args.experiment)  # no longer a job starting: a later resume may start another
    if not world.broadcast(claimed):
        shutdown(world)
        return 0  # another job took it, it is no longer queued, or every slot is taken
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    pinned = config_threads(store, args.experiment)
    governor = ThreadGovernor(store.home, world.size)
    if not pinned:
        governor.adjust(store)
        governor.follow(stop)

    def beat():
        beat_store = RunStore(args.home)
        while not stop.wait(queue.HEARTBEAT_S):
            beat_store.touch_experiment(args.experiment)

    if world.main:
        threading.Thread(target=beat, daemon=True).start()
    log = LogReporter() if world.main else SilentReporter()
    log.note(f"job {os.getpid()} on {socket.gethostname()} started experiment {args.experiment}"
             + (f" ({world.size} processes)" if world.distributed else "")
             + ("" if pinned else f"; {governor.current} CPU threads (its share, adjusted as jobs start and end)"))
    code = 0
    try:
        summary = execute(store, args.experiment, log, should_stop=stop.is_set, world=world)
        if summary is None:
            log.note("cancelled: checkpoint written; `ncalab runs resume` continues it")
        else:
            log.note(f"completed: ppl scratch {summary.ppl_scratch:.3f}, ppl nca {summary.ppl_nca:.3f}, "
                     f"gain {summary.gain:+.4f}")
    except SystemExit:
        raise  # submitit's requeue after a time limit or preemption exits with its own code
    except NcalabError as e:
        log.note(f"failed: {e}")
        code = 1
    except BaseException as e:  # noqa: BLE001 - the status is stored; the traceback goes to the log
        from ncalab.jobs.slurm import REQUEUE

        if REQUEUE.is_set():
            raise  # submitit's requeue signal, surfacing as another error from compiled code: let it requeue
        import traceback

        traceback.print_exc()
        ended = store.get_experiment(args.experiment).status if world.main else "failed"  # "lost": a process died
        log.note(f"{ended}: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
        code = 1
    finally:
        stop.set()
        shutdown(world)
        try:
            if world.main:
                queue.schedule(store)  # free slot: start whatever waits
        except Exception as e:  # noqa: BLE001
            log.note(f"could not start queued jobs: {e}")
    return code


def config_value(store, exp_id: str, key: str, default):
    """A runtime setting of the stored experiment (configs of older versions lack some)."""
    try:
        return store.get_experiment(exp_id).config["runtime"].get(key, default)
    except (KeyError, TypeError, AttributeError):
        return default


def config_threads(store, exp_id: str) -> int:
    """runtime.threads of the experiment (0: follow the machine's share)."""
    try:
        return int(config_value(store, exp_id, "threads", 0))
    except (TypeError, ValueError):
        return 0


if __name__ == "__main__":
    sys.exit(main())
