"""The processes computing on this machine, whatever run store or folder they belong to.

A run store knows the experiments it runs, but two stores (two project folders, a user's and a
tutorial's) on one laptop share its cores. So each job process (and a foreground `ncalab run`)
registers itself in one folder per machine while it computes, and the thread share counts the
live entries there. An entry holds its process id and start time: a process killed with -9
leaves its file behind, and the next count removes it, since no live process has that id and
start time (ids are reused, start times are not).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

FOLDER_ENV = "NCALAB_MACHINE_DIR"  # tests point it at a folder of their own


def folder() -> Path:
    return Path(os.environ.get(FOLDER_ENV) or Path(tempfile.gettempdir()) / "ncalab-machine")


def _started(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _entry(pid: int) -> Path:
    return folder() / f"{pid}.json"


def register(pid: int | None = None) -> Path | None:
    """This process (or ``pid``) computes from now on; None where the folder cannot be written
    (then it is simply not counted by others)."""
    pid = pid or os.getpid()
    where = folder()
    try:
        where.mkdir(mode=0o1777, exist_ok=True)  # every user's jobs share the machine
        with contextlib.suppress(OSError):
            os.chmod(where, 0o1777)
        entry = _entry(pid)
        tmp = entry.with_suffix(".tmp")
        tmp.write_text(json.dumps({"pid": pid, "started": _started(pid)}))
        os.replace(tmp, entry)
        return entry
    except OSError:
        return None


def unregister(pid: int | None = None) -> None:
    with contextlib.suppress(OSError):
        _entry(pid or os.getpid()).unlink()


@contextlib.contextmanager
def computing() -> Iterator[None]:
    """Registered for the duration of the block."""
    register()
    try:
        yield
    finally:
        unregister()


def consumers() -> int:
    """The live processes registered now; the entries of dead ones are removed."""
    where, live = folder(), 0
    try:
        entries = list(where.glob("*.json"))
    except OSError:
        return 0
    for entry in entries:
        try:
            info = json.loads(entry.read_text())
            started = _started(int(info["pid"]))
            alive = started is not None and (info.get("started") is None or abs(started - info["started"]) < 1.0)
        except (OSError, ValueError, KeyError, TypeError):
            alive = False
        if alive:
            live += 1
        else:
            with contextlib.suppress(OSError):
                entry.unlink()
    return live
