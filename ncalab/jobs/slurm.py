"""Experiments on a Slurm cluster, through submitit (`runtime.executor = slurm`).

Each experiment is one Slurm job of `nodes x gpus_per_node` tasks, one per GPU; every task
exports torch.distributed's environment (submitit's TorchDistributedEnvironment) and runs the
ordinary job entry point, so the pipeline, the store and resume are the laptop's. The store
is shared with the cluster's nodes (put NCALAB_HOME on a shared file system, and the database on
PostgreSQL with NCALAB_STORE: an SQLite file on a network file system is refused); it records the
executor and the Slurm job id of each experiment. Time limits and preemption: Slurm signals
the job before it ends, submitit calls `SlurmJob.checkpoint` and requeues it; the experiment
goes back to queued and the requeued job continues from its last periodic checkpoint (metric
points logged after that checkpoint are dropped first, so curves keep no duplicates).
`runtime.executor = submitit-local` runs the same path with submitit's local executor, on
this machine (no Slurm needed: tests use it).
"""

from __future__ import annotations

import importlib
import re
import shutil
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from ncalab.errors import NcalabError
from ncalab.jobs.allocation import gpus
from ncalab.jobs.entry import WORKER_MODULE

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store, StoreReader

EXECUTORS = ("local", "slurm", "submitit-local")
# File systems shared over a network: SQLite's locks do not hold across the nodes that mount them.
NETWORK_FS = ("nfs", "nfs4", "lustre", "gpfs", "beegfs", "cifs", "smb3", "smbfs", "ceph", "glusterfs",
              "fuse.glusterfs", "fuse.beegfs", "fuse.sshfs", "9p", "afs", "pvfs2", "orangefs")
MOUNTS = Path("/proc/self/mounts")
# Set by the requeue hook: the pipeline then leaves its experiment queued for the requeued job.
REQUEUE = threading.Event()
MAX_REQUEUES = 1000


def _submitit():
    try:
        import submitit
    except ImportError:
        raise NcalabError("--executor slurm needs submitit: pip install 'ncalab[slurm]'") from None
    return submitit


class SlurmJob:
    """What each task of the Slurm job runs (picklable: submitit ships it to the nodes)."""

    def __init__(self, home: str, exp_id: str):
        self.home, self.exp_id = home, exp_id

    def __call__(self) -> int:
        submitit = _submitit()
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False)
        worker = importlib.import_module(WORKER_MODULE)
        try:
            return worker.main(["--home", self.home, self.exp_id])
        except BaseException as e:
            # submitit requeues by exiting from its signal handler; when the signal lands inside a
            # checkpoint save, DCP catches that exit and raises its own error instead. Exit as
            # submitit meant to, or its local controller never restarts the job and the
            # experiment waits in the queue for good.
            if REQUEUE.is_set() and not isinstance(e, SystemExit):
                raise SystemExit(_requeue_exit_code(submitit)) from None
            raise

    def checkpoint(self, *args, **kwargs):
        """Called by submitit on rank 0 when Slurm signals the end of the time limit or a
        preemption: requeue the same job (it resumes from the last checkpoint)."""
        REQUEUE.set()
        return _submitit().helpers.DelayedSubmission(SlurmJob(self.home, self.exp_id))


def _requeue_exit_code(submitit) -> int:
    """The exit code of submitit's requeue: its local controller restarts a job that exits with
    it; on Slurm the job was already requeued (scontrol) and the code is only reported."""
    if submitit.JobEnvironment().cluster == "local":
        from submitit.local.local import LOCAL_REQUEUE_RETURN_CODE

        return LOCAL_REQUEUE_RETURN_CODE
    return -1


def _unescape(field: str) -> str:
    """A mount table field: spaces and such are written as octal escapes (\\040)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def filesystem_of(path: Path, mounts: Path | None = None) -> str | None:
    """The type of the file system ``path`` lies on (its longest mount point in the mount table),
    or None where the table cannot be read."""
    try:
        lines = (mounts or MOUNTS).read_text().splitlines()
    except OSError:
        return None
    path, best = Path(path).resolve(), (-1, None)
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        point = Path(_unescape(fields[1]))
        if (path == point or point in path.parents) and len(point.parts) > best[0]:
            best = (len(point.parts), fields[2])
    return best[1]


def check_store(store: Store) -> None:
    """Refuse a cluster's jobs an SQLite store on a network file system: its locks do not hold
    there, so two nodes could both claim one experiment or corrupt the file. Any other store
    (PostgreSQL, or SQLite on a local disk, one node) goes ahead."""
    if store.db_path is None:
        return
    fs = filesystem_of(store.db_path if store.db_path.exists() else store.home)
    if fs in NETWORK_FS or (fs or "").startswith("nfs"):
        raise NcalabError(
            f"--executor slurm: the run store {store.db_path} is SQLite on a network file system ({fs}), whose "
            "locks do not hold across nodes; put it on PostgreSQL: `ncalab store copy --to "
            "postgresql+psycopg://USER@HOST/DB`, then NCALAB_STORE=postgresql+psycopg://USER@HOST/DB "
            "(pip install 'ncalab[postgres]'; run folders stay in NCALAB_HOME)")


def check_available(executor: str) -> None:
    _submitit()
    if executor == "slurm" and shutil.which("sbatch") is None:
        raise NcalabError("--executor slurm needs Slurm's sbatch on PATH (run it on the cluster's login node)")


def executor_for(store: Store, cfg, name: str):
    submitit = _submitit()
    r = cfg.runtime
    folder = Path(store.home) / "slurm"
    # A paper-scale run spans many time limits: requeue it as often as it needs (submitit's default gives up after 3).
    ex = submitit.AutoExecutor(folder=folder, cluster="local" if r.executor == "submitit-local" else "slurm",
                               slurm_max_num_timeout=MAX_REQUEUES, local_max_num_timeout=MAX_REQUEUES)
    params = {"nodes": r.nodes, "tasks_per_node": r.nproc, "timeout_min": _minutes(r.time), "name": name}
    if r.executor == "slurm":
        params.update(gpus_per_node=r.nproc, slurm_partition=r.partition or None,
                      slurm_additional_parameters=dict(a.split("=", 1) for a in r.slurm_args))
    else:
        params["gpus_per_node"] = 0 if not _gpus() else r.nproc
    ex.update_parameters(**{k: v for k, v in params.items() if v is not None})
    return ex


def submit(store: Store, exp_ids: list[str], cfg, parallelism: int = 0) -> list[str]:
    """Submit experiments (several: one job array); returns the Slurm job ids, stored with them."""
    if cfg.runtime.executor == "slurm":
        check_store(store)  # before anything is submitted
    ex = executor_for(store, cfg, f"ncalab-{exp_ids[0]}")
    if len(exp_ids) > 1 and parallelism:
        ex.update_parameters(slurm_array_parallelism=parallelism)
    if len(exp_ids) == 1:
        jobs = [ex.submit(SlurmJob(str(store.home), exp_ids[0]))]
    else:
        with ex.batch():
            jobs = [ex.submit(SlurmJob(str(store.home), e)) for e in exp_ids]
    for exp_id, job in zip(exp_ids, jobs):
        store.set_meta(f"slurm:{exp_id}", f"{cfg.runtime.executor}:{job.job_id}")
    return [job.job_id for job in jobs]


def job_of(store: StoreReader, exp_id: str) -> tuple[str, str] | None:
    """(executor, Slurm job id) of an experiment submitted through submitit, or None."""
    v = store.get_meta(f"slurm:{exp_id}")
    return tuple(v.split(":", 1)) if v else None


def cancel(store: Store, exp_id: str) -> None:
    """scancel through submitit (the local executor: its process group)."""
    executor, job_id = job_of(store, exp_id)
    submitit = _submitit()
    folder = Path(store.home) / "slurm"
    if executor == "slurm":
        submitit.SlurmJob(folder=folder, job_id=job_id).cancel(check=False)
    else:
        import os
        import signal

        try:
            os.killpg(int(job_id), signal.SIGTERM)
        except (ProcessLookupError, PermissionError, ValueError):
            pass


def state(store: StoreReader, exp_id: str) -> str | None:
    """Slurm's state of the experiment's job (PENDING, RUNNING, COMPLETED, FAILED, ...)."""
    found = job_of(store, exp_id)
    if found is None or found[0] != "slurm":
        return None
    return _submitit().SlurmJob(folder=Path(store.home) / "slurm", job_id=found[1]).state


def _minutes(text: str) -> int:
    """A Slurm time limit in minutes: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS."""
    try:
        days, hms = (text.split("-", 1) if "-" in text else ("0", text))
        parts = [int(p) for p in hms.split(":")]
        if "-" in text:  # hours first
            h, m, sec = (parts + [0, 0])[:3]
        elif len(parts) == 3:
            h, m, sec = parts
        elif len(parts) in (1, 2):  # minutes[:seconds]
            h, m, sec = 0, parts[0], (parts + [0])[1]
        else:
            raise ValueError(text)
        total = (int(days) * 24 + h) * 60 + m + (1 if sec else 0)
    except ValueError:
        raise NcalabError(f"--time takes Slurm's formats (MM, HH:MM:SS, D-HH:MM:SS), got {text!r}") from None
    if total <= 0:
        raise NcalabError(f"--time must be positive, got {text!r}")
    return total


def _gpus() -> int:
    return gpus()
