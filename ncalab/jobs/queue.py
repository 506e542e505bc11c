"""The queue: which experiments run now, which wait, and which jobs died.

No daemon: every job, when it ends, starts the next queued experiments itself, and every
ncalab command that reads the store first marks dead jobs as lost (``reap``).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from ncalab.errors import NcalabError

# A job writes a heartbeat every HEARTBEAT_S; one silent for STALE_S is presumed gone when its
# process cannot be checked (another host).
HEARTBEAT_S = 5.0
STALE_S = 120.0


def default_max_jobs() -> int:
    """One job per GPU, one on a CPU-only machine."""
    try:
        import torch

        return max(1, torch.cuda.device_count())
    except Exception:  # noqa: BLE001
        return 1


def max_jobs(store) -> int:
    v = store.get_meta("max_jobs")
    return int(v) if v else default_max_jobs()


def set_max_jobs(store, n: int) -> None:
    if n < 1:
        raise NcalabError(f"--max-jobs must be at least 1, got {n}")
    store.set_meta("max_jobs", str(n))


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie (exited, not yet reaped by its parent) is not alive for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return True


def is_dead(exp, now: float | None = None) -> bool:
    """True when the process of a running experiment (or run) is gone."""
    now = now or time.time()
    if exp.host == socket.gethostname():
        return not pid_alive(exp.pid)
    return exp.heartbeat_at is None or now - exp.heartbeat_at > STALE_S


def reap(store) -> list[str]:
    """Mark running experiments whose job is gone as lost (and their running runs)."""
    lost = []
    for exp in store.list_experiments(status="running"):
        if is_dead(exp):
            store.finish_experiment(exp.id, "lost", error="the job process is gone (killed, crashed or the machine stopped)")
            lost.append(exp.id)
    return lost


def log_path(store, exp_id: str) -> Path:
    return Path(store.home) / "experiments" / exp_id / "job.log"


def spawn(store, exp_id: str) -> int:
    """Start the job process for an experiment, detached from this terminal; returns its pid."""
    log = log_path(store, exp_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ncalab.cli.job", "--home", str(store.home), exp_id],
            stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the shell, the TUI and a closed terminal
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    return proc.pid


def schedule(store) -> list[str]:
    """Start queued experiments, oldest first, while slots are free. Several processes may call
    this at once: a job claims its experiment atomically, so none runs twice."""
    reap(store)
    free = max_jobs(store) - len(store.list_experiments(status="running"))
    started = []
    if free <= 0:
        return started
    for exp in reversed(store.list_experiments(status="queued")):
        if free <= 0:
            break
        spawn(store, exp.id)
        started.append(exp.id)
        free -= 1
    return started


def wait_until(store, exp_id: str, statuses: tuple[str, ...], timeout: float) -> str:
    """Poll until the experiment's status is one of ``statuses``; returns the status."""
    end = time.time() + timeout
    while True:
        reap(store)
        st = store.get_experiment(exp_id).status
        if st in statuses or time.time() > end:
            return st
        time.sleep(0.2)
