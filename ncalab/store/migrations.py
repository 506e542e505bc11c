"""The store's schema version and the steps that upgrade an older store to it."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from ncalab.errors import NcalabError

if TYPE_CHECKING:  # the version alone is read without the ORM (store/quick.py)
    from sqlalchemy import Connection

SCHEMA_VERSION = 4


# MIGRATIONS[v] upgrades a store from schema v to v + 1, inside the init transaction.
# To change the schema: bump SCHEMA_VERSION and add one small function here, e.g.
#   def _v1_to_v2(conn): conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN gpu_hours REAL")
def _v1_to_v2(conn: Connection) -> None:
    """Schema 2: experiments know the job process working on them (background jobs)."""
    for column in ("pid INTEGER", "host VARCHAR", "heartbeat_at FLOAT", "error VARCHAR"):
        conn.exec_driver_sql(f"ALTER TABLE experiments ADD COLUMN {column}")


def _v2_to_v3(conn: Connection) -> None:
    """Schema 3: reuse of identical runs (sweeps share baselines); the sweeps table is new
    and made by create_all."""
    conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN reuse_key VARCHAR")
    conn.exec_driver_sql("ALTER TABLE runs ADD COLUMN source_run_id VARCHAR")
    conn.exec_driver_sql("CREATE INDEX IF NOT EXISTS ix_runs_reuse_key ON runs (reuse_key)")


def _v3_to_v4(conn: Connection) -> None:
    """Schema 4: per-item results of downstream evaluations; the eval_items table is new and
    made by create_all."""


MIGRATIONS: dict[int, Callable[[Connection], None]] = {1: _v1_to_v2, 2: _v2_to_v3, 3: _v3_to_v4}


def migrate(conn: Connection, from_version: int) -> None:
    """Upgrade the schema in place, one version at a time, up to SCHEMA_VERSION."""
    for v in range(from_version, SCHEMA_VERSION):
        step = MIGRATIONS.get(v)
        if step is None:
            raise NcalabError(f"no migration from run store schema {v} to {v + 1}; this store cannot be upgraded")
        step(conn)

