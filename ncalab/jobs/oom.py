"""Whether a job that vanished was killed for memory.

A job killed by the kernel's out-of-memory killer gets SIGKILL and writes nothing. What is
left to see is the count of such kills that Linux keeps for the job's cgroup (oom_kill in
memory.events under cgroup v2, in memory.oom_control under v1; /proc/vmstat's for the whole
machine where neither is there). Each heartbeat the job records that count and the most
memory it has held; when the reaper finds the job gone and the count risen since its last
heartbeat, the experiment is failed with that said, instead of lost with nothing said.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store, StoreReader

COUNTER_ENV = "NCALAB_OOM_COUNTER"  # a file to read the count from instead (a cgroup mounted elsewhere; tests)


def counter_file() -> Path | None:
    """Where this process's cgroup counts out-of-memory kills (None where nothing counts them)."""
    if os.environ.get(COUNTER_ENV):
        return Path(os.environ[COUNTER_ENV])
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        rel = path.lstrip("/")
        candidates = []
        if controllers == "":  # cgroup v2
            candidates.append(Path("/sys/fs/cgroup") / rel / "memory.events")
        elif "memory" in controllers.split(","):  # cgroup v1
            candidates.append(Path("/sys/fs/cgroup/memory") / rel / "memory.oom_control")
        for c in candidates:
            if kills(c) is not None:
                return c
    vmstat = Path("/proc/vmstat")
    return vmstat if kills(vmstat) is not None else None


def kills(path: Path | None) -> int | None:
    """The oom_kill count in a memory.events, memory.oom_control or vmstat file."""
    if path is None:
        return None
    try:
        for line in path.read_text().splitlines():
            name, _, value = line.partition(" ")
            if name == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def record(store: Store, exp_id: str, peak: float) -> None:
    """The job's heartbeat: the kill count of its cgroup now, and the most memory it has held."""
    path = counter_file()
    count = kills(path)
    if count is not None:
        store.set_meta(f"memory:{exp_id}", f"{path}\t{count}\t{int(peak)}")


def verdict(store: StoreReader, exp_id: str) -> str | None:
    """The error of a job that vanished after its cgroup's kill count rose past what its last
    heartbeat saw (it was killed for memory), else None."""
    mark = store.get_meta(f"memory:{exp_id}")
    if not mark:
        return None
    try:
        path, count, peak = mark.split("\t")
        before, peak_bytes = int(count), int(peak)
    except ValueError:
        return None
    now = kills(Path(path))
    if now is None or now <= before:
        return None
    return (f"killed for memory: the kernel's out-of-memory killer ended the job, which had held up to "
            f"{peak_bytes / 2**30:.2f} GiB resident; `ncalab runs resume {exp_id}` continues it from its last checkpoint")
