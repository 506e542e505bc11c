"""Moving a store to another database (SQLite to PostgreSQL and back): every row of one instant
of the source, in one transaction of the destination, verified by row counts and the metric
points' checksum before it is committed. Run folders stay where they are (the home folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import URL, ColumnElement, Connection, Table, literal_column, select

from ncalab.errors import NcalabError
from ncalab.store.backup import TABLE_ORDER, fingerprint
from ncalab.store.connection import ORDERED_TABLES, StoreConnection, describe, store_url
from ncalab.store.schema import TABLES

_BY_NAME = {t.name: t for t in TABLES}


def destination_url(home: Path, to: str) -> URL:
    """A database URL, or a plain path meaning an SQLite file."""
    if "://" not in to:
        return URL.create("sqlite", database=str(Path(to).expanduser().resolve()))
    return store_url(home, to)


def _open_empty(home: Path, url: URL) -> StoreConnection:
    """The destination, opened (its schema made) only if it holds no store yet: a copy never
    overwrites or merges."""
    if url.get_backend_name() == "sqlite" and Path(url.database or "").exists():
        StoreConnection(home, readonly=True, url=url).close()  # refuses a file that is not a store
    dst = StoreConnection(home, url=url)
    with dst._conn() as c:
        rows = {t: c.exec_driver_sql(f"SELECT count(*) FROM {t}").scalar() for t in TABLE_ORDER if t != "store_meta"}
        meta = c.exec_driver_sql("SELECT count(*) FROM store_meta WHERE key <> 'schema_version'").scalar()
    if any(rows.values()) or meta:
        dst.close()
        raise NcalabError(f"{dst.where} already holds a run store ({rows['experiments']} experiments); "
                          "`ncalab store copy` fills only an empty one and never overwrites")
    return dst


def _copy_table(read: Connection, write: Connection, table: Table, insert) -> None:
    # Insertion order is kept (rowid), so listings break ties the same way in the copy.
    order: list[ColumnElement[Any]] = ([literal_column("rowid")] if table.name in ORDERED_TABLES
                                       else list(table.primary_key.columns))
    result = read.execution_options(stream_results=True, yield_per=5000).execute(select(*table.columns).order_by(*order))
    for part in result.partitions():
        rows = [dict(r._mapping) for r in part]
        if table.name == "store_meta":  # the destination wrote its schema version already
            stmt = insert(table)
            write.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": stmt.excluded.value}), rows)
        else:
            write.execute(table.insert(), rows)


def copy_store(src: StoreConnection, to: str) -> dict:
    """Copy every row of ``src`` into the empty database ``to``; returns the verified fingerprint
    (row counts, points' checksum), the destination in words and how many experiments were
    running (their later points stay in the source only)."""
    url = destination_url(src.home, to)
    if describe(url) == src.where:
        raise NcalabError(f"{src.where} is the store being copied; give another database")
    dst = _open_empty(src.home, url)
    try:
        with src.backend.snapshot(src._engine) as read, dst._write() as s:
            write = s.connection()
            for name in TABLE_ORDER:
                _copy_table(read, write, _BY_NAME[name], dst.backend.insert)
            dst.backend.after_copy(write)
            want = fingerprint(read.exec_driver_sql)
            got = fingerprint(write.exec_driver_sql)  # the destination's own rows, before the commit
            if got != want:
                raise NcalabError(f"the copy in {dst.where} does not match the source ({got} != {want}); nothing was kept")
            running = read.exec_driver_sql("SELECT count(*) FROM experiments WHERE status = 'running'").scalar()
    finally:
        dst.close()
    return {**want, "to": describe(url), "running": int(running or 0)}
