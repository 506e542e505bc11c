"""A background thread that computes only the newest request: a live view asks for statistics
every frame, and when frames come faster than they are computed, older requests are dropped
rather than queued (their result would be stale on arrival)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any


class LatestOnly:
    """``submit(job)`` hands a job to one daemon thread; ``compute(job)`` runs there (zlib and
    numpy release the GIL, so the UI thread keeps drawing) and ``deliver(job, result)`` gets each
    result, on that thread: deliver must hand it over to the UI thread itself."""

    def __init__(self, compute: Callable[[Any], Any], deliver: Callable[[Any, Any], None], name: str = "ncalab-latest"):
        self._compute, self._deliver = compute, deliver
        self._cond = threading.Condition()
        self._job: Any = None
        self._pending = False
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Any) -> None:
        with self._cond:
            self._job, self._pending = job, True  # replaces a job not yet started
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                job, self._job, self._pending = self._job, None, False
            try:
                result = self._compute(job)
            except Exception as e:  # shown where the result would be, never a dead thread
                result = e
            self._deliver(job, result)
