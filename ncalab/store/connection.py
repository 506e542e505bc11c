"""The store's SQLite connection: engine, WAL and lock settings, schema creation and upgrade, sessions."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from sqlalchemy import URL, Connection, Engine, event, inspect, select, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, SQLModel, create_engine

from ncalab.errors import NcalabError
from ncalab.store.migrations import SCHEMA_VERSION, migrate
from ncalab.store.schema import TABLES, StoreMeta, new_id

DB_NAME = "ncalab.db"
_IMMEDIATE = "ncalab_immediate"  # execution option that marks the write engine


def default_home() -> Path:
    """``$NCALAB_HOME``, else ``./runs`` (relative to the current directory)."""
    return Path(os.environ.get("NCALAB_HOME") or "runs")


class StoreConnection:
    """One SQLite database (WAL mode) under a home folder, opened for reading and writing.

    Several processes (trainers, the TUI, the CLI) open the same home at once. Two rules keep them
    from tripping on "database is locked":

    * every connection waits up to 30 s for a lock (``busy_timeout``) instead of failing at once;
    * every write transaction starts with ``BEGIN IMMEDIATE``, so it takes the write lock first and
      never has to upgrade a read snapshot (an upgrade that fails with SQLITE_BUSY without waiting).

    Reads use plain deferred transactions: in WAL mode readers never block writers nor each other.
    Open a store in each process (after fork/spawn), never share one across processes.

    ``readonly=True`` only reads (a long-lived browser such as the TUI): SQLite opens the file
    read-only, nothing creates or upgrades the schema, and any write is refused.
    """

    def __init__(self, home: str | Path | None = None, readonly: bool = False):
        self.home = Path(home if home is not None else default_home()).expanduser().resolve()
        self.readonly = readonly
        self.db_path = self.home / DB_NAME
        if readonly:
            if not self.db_path.is_file():
                raise NcalabError(f"no run store at {self.home} yet")
        else:
            try:
                self.home.mkdir(parents=True, exist_ok=True)
            except OSError as e:  # e.g. home (or a parent) is a regular file, or no permission
                raise NcalabError(f"cannot create the run store folder {self.home}: {e.strerror or e}") from None
        try:
            self._engine = self._make_engine()
            # Same pool and listeners; only marks its transactions as BEGIN IMMEDIATE.
            self._writer = self._engine.execution_options(**{_IMMEDIATE: True})
            self._check_schema() if readonly else self._init_schema()
        except SQLAlchemyError as e:
            self._dispose()
            msg = str(getattr(e, "orig", None) or e).splitlines()[0]
            raise NcalabError(f"cannot open the run store {self.db_path}: {msg}") from None
        except NcalabError:
            self._dispose()
            raise

    # ---- engine and schema -------------------------------------------------------------------

    def _make_engine(self) -> Engine:
        if self.readonly:  # SQLite's own read-only mode (a URI), so not even a stray write can happen
            url = URL.create("sqlite", database="file:" + quote(str(self.db_path)), query={"mode": "ro", "uri": "true"})
        else:
            url = f"sqlite:///{self.db_path}"
        engine = create_engine(url, connect_args={"timeout": 30})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            # Let SQLAlchemy (the "begin" hook below) decide where transactions start,
            # not pysqlite's own implicit BEGIN.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            # busy_timeout first: switching a new file to WAL itself needs a lock.
            cur.execute("PRAGMA busy_timeout=30000")
            if self.readonly:  # the writers made it WAL; a reader only reads
                cur.execute("PRAGMA query_only=ON")
                cur.close()
                return
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # safe in WAL; a crash loses at most the last commits
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            immediate = conn.get_execution_options().get(_IMMEDIATE, False)
            conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

        return engine

    def _init_schema(self) -> None:
        # One write transaction, so two processes opening a new home at once cannot race.
        with self._writer.begin() as conn:
            version = self._read_version(conn)
            if version is not None and version > SCHEMA_VERSION:
                raise NcalabError(
                    f"the run store {self.db_path} was created by a newer ncalab (schema {version}, "
                    f"this one knows {SCHEMA_VERSION}); upgrade ncalab"
                )
            if version is not None and version < SCHEMA_VERSION:
                migrate(conn, version)
            SQLModel.metadata.create_all(conn, tables=TABLES)  # only creates what is missing
            if version != SCHEMA_VERSION:
                stmt = sqlite_insert(StoreMeta).values(key="schema_version", value=str(SCHEMA_VERSION))
                conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": str(SCHEMA_VERSION)}))

    def _check_schema(self) -> None:
        """A reader's check: the store is one this version reads as it is (no upgrade here)."""
        with self._engine.connect() as conn:
            version = self._read_version(conn)
        if version is None:
            raise NcalabError(f"{self.db_path} is not an ncalab run store")
        if version > SCHEMA_VERSION:
            raise NcalabError(f"the run store {self.db_path} was created by a newer ncalab (schema {version}, "
                              f"this one knows {SCHEMA_VERSION}); upgrade ncalab")
        if version < SCHEMA_VERSION:
            raise NcalabError(f"the run store {self.db_path} has schema {version}, older than this ncalab's "
                              f"{SCHEMA_VERSION}; any ncalab command that writes to it (e.g. `ncalab runs list`) upgrades it")

    @staticmethod
    def _read_version(conn: Connection) -> int | None:
        if not inspect(conn).has_table(StoreMeta.__tablename__):
            return None  # a fresh database
        raw = conn.execute(select(StoreMeta.value).where(StoreMeta.key == "schema_version")).scalar()
        try:
            return None if raw is None else int(raw)
        except ValueError:
            raise NcalabError(f"the run store {DB_NAME} has a corrupt schema_version: {raw!r}") from None

    # ---- sessions ----------------------------------------------------------------------------

    @contextmanager
    def _read(self) -> Iterator[Session]:
        with Session(self._engine, expire_on_commit=False) as s:
            yield s

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A short write transaction (BEGIN IMMEDIATE), committed on exit, rolled back on error."""
        if self.readonly:
            raise NcalabError(f"the run store {self.db_path} is open read-only here")
        with Session(self._writer, expire_on_commit=False) as s, s.begin():
            yield s

    def _update(self, model: type[SQLModel], id_: str, what: str, **values: Any) -> None:
        """One UPDATE by primary key, no read first (heartbeats are frequent)."""
        with self._write() as s:
            result = s.execute(update(model).where(model.id == id_).values(**values))
            if result.rowcount == 0:
                raise NcalabError(f"no {what} with id {id_}")

    def _dispose(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.dispose()

    def close(self) -> None:
        self._dispose()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def get_row(s: Session, model: type[SQLModel], id_: str, what: str):
    """The row with this primary key, or a one-line error naming what is missing."""
    obj = s.get(model, id_)
    if obj is None:
        raise NcalabError(f"no {what} with id {id_}")
    return obj


def fresh_id(s: Session, model: type[SQLModel], prefix: str) -> str:
    """A new id not yet in the table (8 hex chars collide rarely, but not never)."""
    while True:
        id_ = new_id(prefix)
        if s.get(model, id_) is None:
            return id_
