"""Making a write survive a crash: fsync a file, or the folder that names it. At the bottom of
the package (no ncalab imports), for the store's backups and the trainer's checkpoints alike."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_file(path: Path) -> None:
    """Flush a file (or a folder) that is already written to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a file renamed into it), where the file system can."""
    try:
        fsync_file(path)
    except OSError:  # not every file system can sync a directory
        pass
