"""The store's database connection: SQLite (a file in the home folder, the default) or PostgreSQL
(``NCALAB_STORE=postgresql+psycopg://...``); engine, lock settings, schema creation and upgrade,
sessions. Everything that differs between the two databases is here (``Backend``), nowhere else."""

from __future__ import annotations

import functools
import inspect as inspect_
import os
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self
from urllib.parse import quote

from sqlalchemy import URL, Connection, CursorResult, Engine, Result, event, inspect, make_url, select, text, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import ArgumentError, InterfaceError, OperationalError, SQLAlchemyError
from sqlmodel import Session, SQLModel, col, create_engine

from ncalab.errors import NcalabError
from ncalab.store.backup import damaged, fingerprint
from ncalab.store.location import DB_NAME, STORE_ENV, default_home
from ncalab.store.migrations import SCHEMA_VERSION, migrate
from ncalab.store.schema import TABLES, Experiment, Run, StoreMeta, Sweep, new_id

_IMMEDIATE = "ncalab_immediate"  # execution option that marks the write engine
_XID = "ncalab_xid"  # a server's id of the connection's write transaction (connection info)
LOCK_WAIT_S = 30  # how long a connection waits for a lock before it gives up
# PostgreSQL's stand-in for SQLite's one write lock: a transaction-level advisory lock (any fixed number).
_PG_WRITE_LOCK = 0x6E63616C
# Tables listed in insertion order ("rowid" breaks ties); PostgreSQL gets a rowid column of its own.
ORDERED_TABLES = ("experiments", "runs", "sweeps", "eval_items")
RETRY_ENV = "NCALAB_STORE_RETRY_S"  # how long an operation retries a server that went away (default 60 s)


def retry_s() -> float:
    try:
        return float(os.environ.get(RETRY_ENV) or 60)
    except ValueError:
        raise NcalabError(f"{RETRY_ENV} takes seconds, got {os.environ[RETRY_ENV]!r}") from None


class StoreGone(NcalabError):
    """The database server went away in the middle of an operation, before anything was
    committed: the whole operation may run again (``retried`` does, for a bounded time)."""


def retried(fn):
    """A store operation that runs again, for up to ``retry_s()``, when the server went away under
    it (a restart, a failover): nothing of a failed attempt was committed, so nothing doubles."""

    @functools.wraps(fn)
    def call(self, *args, **kwargs):
        deadline, delay = time.monotonic() + retry_s(), 0.2
        while True:
            try:
                return fn(self, *args, **kwargs)
            except StoreGone:
                if time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    return call


def retry_operations(cls: type) -> type:
    """Every public method of the store class, made ``retried`` (one place, not one per method)."""
    for name in dir(cls):
        value = inspect_.getattr_static(cls, name)  # as the class resolves it, not a shadowed one
        if not name.startswith("_") and inspect_.isfunction(value) and name != "close":
            setattr(cls, name, retried(value))
    return cls


_PASSWORD = re.compile(r"(://[^:/@\s]*:)([^@\s]*)(@)")


def mask(text: str) -> str:
    """Any ``scheme://user:password@`` in a text with the password as ***."""
    return _PASSWORD.sub(r"\1***\3", text)


def store_url(home: Path, url: str | URL | None = None) -> URL:
    """The database of a store: ``url``, else ``$NCALAB_STORE``, else the SQLite file in ``home``.
    ``postgresql://`` means psycopg (version 3), the driver ncalab's ``postgres`` extra installs."""
    raw = url if url is not None else (os.environ.get(STORE_ENV) or "").strip() or None
    if raw is None:
        return URL.create("sqlite", database=str(home / DB_NAME))
    try:
        parsed = make_url(raw)
    except ArgumentError:
        raise NcalabError(f"the run store's URL ({STORE_ENV}, --store) is not a database URL: {mask(str(raw))!r}; "
                          "expected postgresql+psycopg://USER@HOST:PORT/DATABASE or sqlite:///PATH") from None
    backend = parsed.get_backend_name()
    if backend == "postgresql" and parsed.drivername in ("postgresql", "postgresql+psycopg"):
        return parsed.set(drivername="postgresql+psycopg")
    if backend == "sqlite" and parsed.database:
        return parsed
    raise NcalabError("the run store's URL takes postgresql+psycopg://USER@HOST:PORT/DATABASE or sqlite:///PATH, "
                      f"got {parsed.render_as_string(hide_password=True)}")


def store_exists(home: Path) -> bool:
    """Whether there is a store to read: its SQLite file, or a database server (always there)."""
    url = store_url(home)
    return url.get_backend_name() != "sqlite" or Path(url.database or "").is_file()


def describe(url: URL) -> str:
    """A store's database in words for messages and listings, never with its password."""
    if url.get_backend_name() == "sqlite":
        return str(url.database)
    return url.render_as_string(hide_password=True)


def rowcount(result: Result[Any]) -> int:
    """Rows an UPDATE or DELETE touched (its result is a CursorResult; Session.execute's type
    hint says only Result)."""
    assert isinstance(result, CursorResult)
    return result.rowcount


class Backend:
    """SQLite: WAL, ``BEGIN IMMEDIATE`` for writes, ``busy_timeout``, the file's rowid."""

    name = "sqlite"
    insert: Callable[[Any], Any] = staticmethod(sqlite_insert)  # INSERT ... ON CONFLICT DO UPDATE (same API on both)

    def engine(self, url: URL, readonly: bool) -> Engine:
        if readonly:  # SQLite's own read-only mode (a URI), so not even a stray write can happen
            url = URL.create("sqlite", database="file:" + quote(str(url.database)), query={"mode": "ro", "uri": "true"})
        engine = create_engine(url, connect_args={"timeout": LOCK_WAIT_S})

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            # Let SQLAlchemy (the "begin" hook) decide where transactions start, not pysqlite's implicit BEGIN.
            dbapi_conn.isolation_level = None
            cur = dbapi_conn.cursor()
            # busy_timeout first: switching a new file to WAL itself needs a lock.
            cur.execute(f"PRAGMA busy_timeout={LOCK_WAIT_S * 1000}")
            if readonly:  # the writers made it WAL; a reader only reads
                cur.execute("PRAGMA query_only=ON")
            else:
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA synchronous=NORMAL")  # safe in WAL; a crash loses at most the last commits
                cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            # A writer takes the write lock first, so it never has to upgrade a read snapshot
            # (an upgrade that fails with SQLITE_BUSY without waiting).
            conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get(_IMMEDIATE) else "BEGIN")

        return engine

    def after_create(self, conn: Connection) -> None:
        """Bring a new or upgraded schema to what this database needs beyond the tables."""

    def went_away(self, e: SQLAlchemyError) -> bool:
        """Whether an error means the database is out of reach for now (worth retrying)."""
        return False

    def committed(self, engine: Engine, xid: int) -> bool | None:
        """What became of a write transaction whose commit was cut off (a server only)."""
        return None

    def snapshot(self, engine: Engine) -> Connection:
        """A connection whose transaction reads one instant of the store throughout (a copy):
        SQLite's read transaction is one snapshot already."""
        return engine.connect()

    def after_copy(self, conn: Connection) -> None:
        """After rows were copied in with their ids: what the database needs to go on from them."""


class PostgresBackend(Backend):
    """PostgreSQL: every write transaction first takes one store-wide advisory lock (what ``BEGIN
    IMMEDIATE`` is to SQLite: writers take turns, so a check-then-write such as a claim is never
    raced), waiting up to ``LOCK_WAIT_S``; reads are plain READ COMMITTED snapshots and never wait."""

    name = "postgresql"
    insert: Callable[[Any], Any] = staticmethod(pg_insert)

    def engine(self, url: URL, readonly: bool) -> Engine:
        options = f"-c lock_timeout={LOCK_WAIT_S * 1000}"
        if readonly:
            options += " -c default_transaction_read_only=on"
        # pre_ping: a pooled connection that died with a server restart is replaced, not used.
        engine = create_engine(url, pool_pre_ping=True, isolation_level="READ COMMITTED",
                               connect_args={"connect_timeout": 10, "options": options})

        @event.listens_for(engine, "begin")
        def _on_begin(conn):
            if conn.get_execution_options().get(_IMMEDIATE):
                # The lock, and (same round trip) the transaction's id: if its commit is cut off,
                # committed() asks the server what became of it.
                conn.info[_XID] = conn.exec_driver_sql(
                    f"SELECT txid_current() FROM (SELECT pg_advisory_xact_lock({_PG_WRITE_LOCK})) AS held").scalar()

        return engine

    def committed(self, engine: Engine, xid: int) -> bool | None:
        """Whether transaction ``xid`` committed (True), or not (False); None while the server
        cannot tell yet (unreachable). PostgreSQL keeps every recent transaction's fate."""
        try:
            with engine.connect() as conn:
                status = conn.execute(text("SELECT txid_status(:xid)"), {"xid": xid}).scalar()
        except SQLAlchemyError as e:
            if self.went_away(e):
                return None
            raise
        return None if status == "in progress" else status == "committed"

    def after_create(self, conn: Connection) -> None:
        # The insertion order SQLite keeps in its rowid, as a column here: listings break ties on it
        # and a copy keeps it. An upsert's update leaves it, as SQLite's does.
        for table in ORDERED_TABLES:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS rowid BIGSERIAL")

    def went_away(self, e: SQLAlchemyError) -> bool:
        # No answer at all, a connection error (08...) or the server shutting down or starting (57P...);
        # not a lock that timed out nor a bad statement.
        if not isinstance(e, (OperationalError, InterfaceError)):
            return False
        state = getattr(e.orig, "sqlstate", None)
        return e.connection_invalidated or state is None or state.startswith(("08", "57P"))

    def snapshot(self, engine: Engine) -> Connection:
        return engine.connect().execution_options(isolation_level="REPEATABLE READ")

    def after_copy(self, conn: Connection) -> None:
        # Copied points keep their ids: the id sequence goes on after the largest.
        conn.exec_driver_sql("SELECT setval(pg_get_serial_sequence('metric_points', 'id'), "
                             "COALESCE(max(id), 0) + 1, false) FROM metric_points")


def backend_for(url: URL) -> Backend:
    return PostgresBackend() if url.get_backend_name() == "postgresql" else Backend()


class StoreConnection:
    """One database, opened for reading and writing, and a home folder for the run folders.

    The database is SQLite in WAL mode (``<home>/ncalab.db``, the default) or a PostgreSQL server
    (``url``, else ``$NCALAB_STORE``): on a cluster, where many nodes write at once and SQLite's
    locks do not hold over a network file system. The home folder (run folders, checkpoints,
    logs) stays on the file system, shared between the nodes.

    Several processes (trainers, the TUI, the CLI) open the same store at once. Two rules keep
    them from tripping over each other's locks:

    * every connection waits up to 30 s for a lock instead of failing at once;
    * every write transaction takes the store's write lock first (SQLite: ``BEGIN IMMEDIATE``;
      PostgreSQL: an advisory lock), so writers take turns and a check-then-write (a claim) is
      never raced; SQLite never has to upgrade a read snapshot (which fails without waiting).

    Reads use plain transactions: readers never block writers nor each other. Open a store in
    each process (after fork/spawn), never share one across processes.

    ``readonly=True`` only reads (a long-lived browser such as the TUI): the database is opened
    read-only, nothing creates or upgrades the schema, and any write is refused.
    """

    def __init__(self, home: str | Path | None = None, readonly: bool = False, url: str | URL | None = None):
        self.home = Path(home if home is not None else default_home()).expanduser().resolve()
        self.readonly = readonly
        self.url = store_url(self.home, url)
        self.backend = backend_for(self.url)
        # The SQLite file (None on a server): backups, damage checks and messages name it.
        self.db_path = Path(self.url.database or "") if self.backend.name == "sqlite" else None
        self.where = describe(self.url)  # for messages: never the password
        if readonly and self.db_path is not None and not self.db_path.is_file():
            raise NcalabError(f"no run store at {self.home} yet")
        if not readonly:
            for folder in {self.home, *([self.db_path.parent] if self.db_path else [])}:
                try:
                    folder.mkdir(parents=True, exist_ok=True)
                except OSError as e:  # e.g. home (or a parent) is a regular file, or no permission
                    raise NcalabError(f"cannot create the run store folder {folder}: {e.strerror or e}") from None
        try:
            self._engine = self.backend.engine(self.url, readonly)
            # Same pool and listeners; only marks its transactions as the store's writes.
            self._writer = self._engine.execution_options(**{_IMMEDIATE: True})
            self._check_schema() if readonly else self._init_schema()
        except SQLAlchemyError as e:
            self._dispose()
            raise self._error(e, "cannot open the run store") from None
        except NcalabError:
            self._dispose()
            raise

    # ---- engine and schema -------------------------------------------------------------------

    def _init_schema(self) -> None:
        # One write transaction, so two processes opening a new store at once cannot race.
        s = self._session(self._writer, write=True, what="cannot open the run store", retry=False)
        with s:
            conn = s.connection()
            version = self._read_version(conn)
            if version is not None and version > SCHEMA_VERSION:
                raise NcalabError(
                    f"the run store {self.where} was created by a newer ncalab (schema {version}, "
                    f"this one knows {SCHEMA_VERSION}); upgrade ncalab"
                )
            if version is not None and version < SCHEMA_VERSION:
                migrate(conn, version)
            SQLModel.metadata.create_all(conn, tables=TABLES)  # only creates what is missing
            if version != SCHEMA_VERSION:
                self.backend.after_create(conn)  # not on every open: it may lock whole tables
                stmt = self.backend.insert(StoreMeta).values(key="schema_version", value=str(SCHEMA_VERSION))
                conn.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": str(SCHEMA_VERSION)}))
            s.commit()

    def _check_schema(self) -> None:
        """A reader's check: the store is one this version reads as it is (no upgrade here)."""
        s = self._session(self._engine, write=False, what="cannot open the run store", retry=False)
        with s:
            version = self._read_version(s.connection())
        if version is None:
            raise NcalabError(f"{self.where} is not an ncalab run store")
        if version > SCHEMA_VERSION:
            raise NcalabError(f"the run store {self.where} was created by a newer ncalab (schema {version}, "
                              f"this one knows {SCHEMA_VERSION}); upgrade ncalab")
        if version < SCHEMA_VERSION:
            raise NcalabError(f"the run store {self.where} has schema {version}, older than this ncalab's "
                              f"{SCHEMA_VERSION}; any ncalab command that writes to it (e.g. `ncalab runs list`) upgrades it")

    @staticmethod
    def _read_version(conn: Connection) -> int | None:
        if not inspect(conn).has_table(StoreMeta.__tablename__):
            return None  # a fresh database
        raw = conn.execute(select(col(StoreMeta.value)).where(col(StoreMeta.key) == "schema_version")).scalar()
        try:
            return None if raw is None else int(raw)
        except ValueError:
            raise NcalabError(f"the run store {DB_NAME} has a corrupt schema_version: {raw!r}") from None

    # ---- sessions ----------------------------------------------------------------------------

    def _session(self, engine: Engine, write: bool, what: str = "the run store", retry: bool = True) -> Session:
        """A session whose connection, transaction and (writing) write lock are taken now, so a
        server that went away is retried here, for up to retry_s(), before any work is done.
        Opening a store does not retry: a wrong or unreachable URL is an error at once."""
        deadline, delay = time.monotonic() + (retry_s() if retry else 0), 0.2
        while True:
            s = Session(engine, expire_on_commit=False)
            try:
                if write:
                    s.begin()
                s.connection()
                return s
            except SQLAlchemyError as e:
                s.close()
                if not self.backend.went_away(e) or time.monotonic() + delay > deadline:
                    raise self._error(e, what) from None
                time.sleep(delay)
                delay = min(delay * 2, 5.0)

    @contextmanager
    def _read(self) -> Iterator[Session]:
        s = self._session(self._engine, write=False)
        try:
            yield s
        except SQLAlchemyError as e:
            raise self._error(e, gone_ok=True) from None
        finally:
            s.close()

    @contextmanager
    def _conn(self) -> Iterator[Connection]:
        """A plain connection for reads of a few columns (no ORM objects: fast)."""
        with self._read() as s:
            yield s.connection()

    @contextmanager
    def _write(self) -> Iterator[Session]:
        """A short write transaction (the write lock first), committed on exit, rolled back on error."""
        if self.readonly:
            raise NcalabError(f"the run store {self.where} is open read-only here")
        s = self._session(self._writer, write=True)
        xid = s.connection().info.pop(_XID, None)
        try:
            try:
                yield s
            except SQLAlchemyError as e:  # before the commit: nothing of it was written
                raise self._error(e, gone_ok=True) from None
            try:
                s.commit()
            except SQLAlchemyError as e:
                if not self._cut_off_commit_landed(e, xid):
                    raise self._error(e, gone_ok=True) from None  # it did not commit: may run again
        finally:
            s.close()  # rolls back what was not committed

    def _cut_off_commit_landed(self, e: SQLAlchemyError, xid: int | None) -> bool:
        """A commit whose answer was lost with the server: ask it, once it is back (up to
        retry_s()), whether the transaction committed. False: it did not, so the operation may
        run again. Unknown (no server, or SQLite): an error, never run twice."""
        if xid is None or not self.backend.went_away(e):
            raise self._error(e) from None
        deadline = time.monotonic() + retry_s()
        while True:
            outcome = self.backend.committed(self._engine, xid)
            if outcome is not None:
                return outcome
            if time.monotonic() > deadline:
                raise self._error(e) from None
            time.sleep(0.5)

    def _error(self, e: SQLAlchemyError, what: str = "the run store", gone_ok: bool = False) -> NcalabError:
        """A database error as one line that names the store (never its password) and the cause;
        a StoreGone (the operation may run again) when ``gone_ok`` and the server went away."""
        orig = getattr(e, "orig", None) or e
        lines = [line.strip() for line in str(orig).splitlines() if line.strip()]
        msg = mask(lines[0]) if lines else type(orig).__name__
        if self.url.password:
            msg = msg.replace(str(self.url.password), "***")
        name = getattr(orig, "sqlite_errorname", "")
        if name in ("SQLITE_CORRUPT", "SQLITE_NOTADB") and self.db_path is not None:
            return NcalabError(damaged(self.db_path, msg))
        if name == "SQLITE_FULL":
            msg = f"the disk is full ({msg}); free space, then `ncalab runs resume` continues"
        if gone_ok and self.backend.went_away(e):
            return StoreGone(f"{what} {self.where} went away: {msg}")
        return NcalabError(f"{what} {self.where}: {msg}")

    def fingerprint(self) -> dict:
        """Row counts of every table and a checksum of every metric point (compares two copies)."""
        with self._conn() as conn:
            return fingerprint(conn.exec_driver_sql)

    def _update(self, model: type[Experiment] | type[Run] | type[Sweep], id_: str, what: str, **values: Any) -> None:
        """One UPDATE by primary key, no read first (heartbeats are frequent)."""
        with self._write() as s:
            result = s.execute(update(model).where(col(model.id) == id_).values(**values))
            if rowcount(result) == 0:
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
