"""The job process of one experiment: `python -m ncalab.cli.job --home H EXP_ID`.

It claims the experiment, trains it (continuing from checkpoints), stops gracefully on
SIGTERM (checkpoint first), keeps a heartbeat, logs to the experiment's job.log, and when it
ends starts the next queued experiments.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
import threading
import time

from ncalab.errors import NcalabError
from ncalab.jobs import queue


class LogReporter:
    """Plain lines for job.log: stage starts and ends, and progress every few seconds."""

    def __init__(self, every_s: float = 10.0):
        self.every_s, self._last = every_s, 0.0
        self.totals: dict[str, int] = {}

    def _print(self, text: str) -> None:
        print(f"{time.strftime('%H:%M:%S')} {text}", flush=True)

    def stage(self, name, total_tokens):
        self.totals[name] = total_tokens
        self._print(f"[{name}] started: {total_tokens:,} tokens")

    def progress(self, name, tokens, metrics):
        now = time.time()
        if now - self._last < self.every_s:
            return
        self._last = now
        bits = [f"{tokens:,}/{self.totals.get(name, 0):,} tokens", f"loss {metrics.get('train_loss', float('nan')):.4f}"]
        if "val_ppl" in metrics:
            bits.append(f"val ppl {metrics['val_ppl']:.3f}")
        bits.append(f"{metrics.get('tokens_per_s', 0):,.0f} tok/s")
        self._print(f"[{name}] " + "  ".join(bits))

    def done(self, name, result):
        self._print(f"[{name}] done")

    def note(self, text):
        self._print(text)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="ncalab-job")
    ap.add_argument("--home", required=True)
    ap.add_argument("experiment")
    args = ap.parse_args(argv)

    from ncalab.services.experiments import execute
    from ncalab.store import RunStore

    store = RunStore(args.home)
    if not store.claim_experiment(args.experiment, os.getpid(), socket.gethostname(), queue.max_jobs(store)):
        return 0  # another job took it, it is no longer queued, or every slot is taken
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    def beat():
        beat_store = RunStore(args.home)
        while not stop.wait(queue.HEARTBEAT_S):
            beat_store.touch_experiment(args.experiment)

    threading.Thread(target=beat, daemon=True).start()
    log = LogReporter()
    log.note(f"job {os.getpid()} on {socket.gethostname()} started experiment {args.experiment}")
    code = 0
    try:
        summary = execute(store, args.experiment, log, should_stop=stop.is_set)
        if summary is None:
            log.note("cancelled: checkpoint written; `ncalab runs resume` continues it")
        else:
            log.note(f"completed: ppl scratch {summary.ppl_scratch:.3f}, ppl nca {summary.ppl_nca:.3f}, "
                     f"gain {summary.gain:+.4f}")
    except NcalabError as e:
        log.note(f"failed: {e}")
        code = 1
    except BaseException as e:  # noqa: BLE001 - the status is stored; the traceback goes to the log
        import traceback

        traceback.print_exc()
        log.note(f"failed: {type(e).__name__}: {e}")
        code = 1
    finally:
        stop.set()
        try:
            queue.schedule(store)  # free slot: start whatever waits
        except Exception as e:  # noqa: BLE001
            log.note(f"could not start queued jobs: {e}")
    return code


if __name__ == "__main__":
    sys.exit(main())
