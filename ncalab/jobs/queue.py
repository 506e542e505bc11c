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
from typing import TYPE_CHECKING

from ncalab.config.stored import stored_config, stored_runtime
from ncalab.errors import NcalabError
from ncalab.jobs import oom
from ncalab.jobs.entry import WORKER_MODULE

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store, StoreReader

# A job writes a heartbeat every HEARTBEAT_S; one silent for STALE_S is presumed gone when its
# process cannot be checked (another host).
HEARTBEAT_S = 5.0
STALE_S = 120.0


def default_max_jobs() -> int:
    from ncalab.jobs.allocation import (  # late: keeps torch, SQLAlchemy out of the quick commands
        default_max_jobs as by_machine,
    )

    return by_machine()


def max_jobs(store: StoreReader) -> int:
    v = store.get_meta("max_jobs")
    return int(v) if v else default_max_jobs()


def set_max_jobs(store: Store, n: int) -> None:
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


def reap(store: Store) -> list[str]:
    """Mark running experiments whose job is gone as lost (and their running runs), or failed
    when it was killed for memory (jobs/oom.py). A read-only store (the TUI's reader) leaves
    that to its owner's writer, which reaps on a timer."""
    if store.readonly:
        return []

    lost = []
    for exp in store.list_experiments(status="running"):
        if not is_dead(exp):
            continue
        killed = oom.verdict(store, exp.id) if exp.host == socket.gethostname() else None
        if killed:  # resumable like a lost job, but it says why
            for run in store.runs_of(exp.id):
                if run.status == "running":
                    store.finish_run(run.id, "failed", error=killed)
            store.finish_experiment(exp.id, "failed", error=killed)
        else:
            store.finish_experiment(exp.id, "lost", error="the job process is gone (killed, crashed or the machine stopped)")
        lost.append(exp.id)
    return lost


def log_path(store: StoreReader, exp_id: str) -> Path:
    return Path(store.home) / "experiments" / exp_id / "job.log"


def spawn(store: Store, exp_id: str) -> int:
    """Start the job process for an experiment, detached from this terminal; returns its pid.
    An experiment with runtime.nproc > 1 starts under torchrun (torch's own elastic launcher),
    on GPUs no other job holds."""
    from ncalab.jobs.allocation import free_gpus, threads_for  # late: keeps torch, SQLAlchemy out of the quick commands

    log = log_path(store, exp_id)
    log.parent.mkdir(parents=True, exist_ok=True)
    nproc = _nproc(store, exp_id)
    job = ["-m", WORKER_MODULE, "--home", str(store.home), exp_id]
    if nproc > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}", *job]
    else:
        cmd = [sys.executable, *job]
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": str(threads_for(store, nproc, starting=True))}
    gpus = free_gpus(store, nproc)
    if gpus:
        env["CUDA_VISIBLE_DEVICES"] = ",".join(map(str, gpus))
        store.set_meta(f"gpus:{exp_id}", ",".join(map(str, gpus)))
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
            start_new_session=True,  # survives the shell, the TUI and a closed terminal; a process group to signal
            env=env,
        )
    store.set_meta(f"spawned:{exp_id}", f"{proc.pid}:{_started_at(proc.pid)}")  # until it claims or exits, start no other
    return proc.pid


def _started_at(pid: int) -> float:
    """When a process started (a pid number alone may be reused by another process later)."""
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return 0.0


def started(store: Store, exp_id: str) -> None:
    """The job started for this experiment has claimed it, or given up: forget it was starting."""
    store.set_meta(f"spawned:{exp_id}", "")


def _starting(store: StoreReader, exp) -> bool:
    """A job was started for this queued experiment and is still alive, not yet claiming it
    (importing torch takes seconds, far longer on a loaded machine)."""
    mark = store.get_meta(f"spawned:{exp.id}")
    if exp.status != "queued" or not mark:
        return False
    pid, _, started = mark.partition(":")
    try:
        return pid_alive(int(pid)) and _started_at(int(pid)) == float(started)
    except ValueError:
        return False


def _nproc(store: StoreReader, exp_id: str) -> int:
    return stored_runtime(store.get_experiment(exp_id).config).nproc


def signal_job(pid: int, sig: int) -> None:
    """Signal a job: its whole process group when it leads one (a detached job, torchrun and its
    workers), else the process alone (a foreground `ncalab run` in a shell's group)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
            return
    except OSError:
        pass
    os.kill(pid, sig)


def schedule(store: Store) -> list[str]:
    """Start queued experiments, oldest first, while slots are free and the next one's expected
    peak memory fits beside the running jobs (allocation.MemoryLedger). Several processes may
    call this at once: a job claims its experiment atomically, so none runs twice."""
    from ncalab.jobs.allocation import MemoryLedger  # late: keeps torch, SQLAlchemy out of the quick commands

    reap(store)
    queued = list(reversed(store.list_experiments(status="queued")))
    cluster = [e for e in queued if _executor(e) != "local"]
    if cluster:
        _submit_to_cluster(store, cluster)
    here = socket.gethostname()
    running = [e for e in store.list_experiments(status="running") if _executor(e) == "local"]
    local = [e for e in queued if _executor(e) == "local"]
    starting = [e for e in local if _starting(store, e)]
    free = max_jobs(store) - len(running) - len(starting)
    memory = MemoryLedger([e for e in running if e.host == here], starting, lambda e: expected_memory(store, e))
    started = []
    for exp in (e for e in local if e.id not in {s.id for s in starting}):
        if free <= 0 or not memory.take(expected_memory(store, exp)):
            break  # oldest first: a job that does not fit yet is not overtaken
        spawn(store, exp.id)
        started.append(exp.id)
        free -= 1
    return started


def expected_memory(store: StoreReader, exp) -> float:
    """Bytes the job of a stored experiment is expected to hold at its peak (planning/footprint.py)."""
    from ncalab.jobs.allocation import gpus  # late: keeps torch, SQLAlchemy out of the quick commands
    from ncalab.planning.footprint import expected_peak  # late: keeps torch, numpy out of the quick commands

    cfg = stored_config(exp.config)
    try:
        return expected_peak(store, cfg, on_gpu=cfg.runtime.device != "cpu" and gpus() > 0)
    except NcalabError:  # its data is gone (a stored NCA corpus): the job starts and says so itself
        return 0.0


def start(store: Store, exp_id: str) -> str:
    """Start what the queue's free slots allow; "running" if this experiment's job started
    now, else "queued" (it starts when a slot frees)."""
    return "running" if exp_id in schedule(store) else "queued"


def _executor(exp) -> str:
    return stored_runtime(exp.config).executor


def _submit_to_cluster(store: Store, exps) -> None:
    """Queued cluster experiments without a live Slurm job get one (a sweep's members submit
    together, as one job array, when they are created)."""
    from ncalab.jobs import slurm  # late: keeps torch, SQLAlchemy out of the quick commands

    for exp in exps:
        if slurm.job_of(store, exp.id) is None:
            slurm.submit(store, [exp.id], stored_config(exp.config))


def wait_until(store: Store, exp_id: str, statuses: tuple[str, ...], timeout: float) -> str:
    """Poll until the experiment's status is one of ``statuses``; returns the status."""
    end = time.time() + timeout
    while True:
        reap(store)
        st = store.get_experiment(exp_id).status
        if st in statuses or time.time() > end:
            return st
        time.sleep(0.2)
