"""The app's two handles on the run store, opened once and shared by every screen.

Screens refresh every few seconds for as long as the app is open (days, for some), beside
training jobs that write all the time. So every refresh reads through one read-only store
(SQLite read-only, no schema transaction, a pool of reused connections), and the few writes
the app makes (cancel, resume, tag, delete, launch, and marking dead jobs lost every
REAP_EVERY_S) go through one ordinary store kept for the app's life. Both are disposed when the
app exits, so the app holds a fixed number of files however long it runs.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ncalab.errors import NcalabError
from ncalab.services.live import open_reader, reap_lost, store_exists
from ncalab.services.runstore import home_folder, open_store

REAP_EVERY_S = 5.0  # how often the app marks jobs whose process is gone as lost


class AppStores:
    def __init__(self, home=None):
        self._home = home  # resolved on first use, in a worker: the store's libraries load slowly
        self._reader = None
        self._writer = None
        self._lock = threading.Lock()  # screens' workers ask from several threads at once
        self.closed = False

    @property
    def home(self) -> Path:
        return home_folder(self._home).expanduser().resolve()

    def exists(self) -> bool:
        """Whether anything has created the store yet (the app never creates it by looking); a
        database server (NCALAB_STORE) is always there."""
        if self.home.exists() and not self.home.is_dir():
            raise NcalabError(f"{self.home} is not a folder")

        return store_exists(self.home)

    def reader(self):
        """The shared read-only store, or None while there is no store yet."""
        with self._lock:
            if self._reader is None:
                if self.closed or not self.exists():
                    return None

                if self._writer is None:  # once: an older store is upgraded before it is read
                    self._writer = open_store(self.home)
                self._reader = open_reader(self.home)
            return self._reader

    def writer(self):
        """The app's store for writes (created here by the first launch if there is none)."""
        with self._lock:
            if self.closed:
                raise NcalabError("the app is closing")
            if self._writer is None:
                self._writer = open_store(self.home)
            return self._writer

    def reap(self) -> list[str]:
        """Mark running experiments whose job is gone as lost (nothing to do without a store)."""
        if not self.exists():
            return []

        return reap_lost(self.writer())

    def close(self) -> None:
        with self._lock:
            self.closed = True
            for store in (self._reader, self._writer):
                if store is not None:
                    store.close()
            self._reader = self._writer = None
