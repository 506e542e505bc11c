"""The store's meta table: small key/value settings (the schema version among them)."""

from __future__ import annotations

from sqlalchemy import select
from sqlmodel import col

from ncalab.store.connection import StoreConnection
from ncalab.store.schema import StoreMeta


class MetaMixin(StoreConnection):
    """Rows of the store_meta table, by key."""

    def get_meta(self, key: str) -> str | None:
        with self._conn() as conn:
            return conn.execute(select(col(StoreMeta.value)).where(col(StoreMeta.key) == key)).scalar()

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as s:
            stmt = self.backend.insert(StoreMeta).values(key=key, value=value)
            s.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))
