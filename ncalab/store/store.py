"""RunStore: the run store's parts (one per table group) composed into the one object every caller opens."""

from __future__ import annotations

from ncalab.store.connection import StoreConnection, retry_operations
from ncalab.store.experiments import ExperimentsMixin
from ncalab.store.items import ItemsMixin
from ncalab.store.location import DB_NAME, default_home
from ncalab.store.meta import MetaMixin
from ncalab.store.metrics import MetricsMixin
from ncalab.store.migrations import MIGRATIONS, SCHEMA_VERSION
from ncalab.store.runs import RunsMixin
from ncalab.store.sweeps import SweepsMixin

__all__ = ["DB_NAME", "MIGRATIONS", "SCHEMA_VERSION", "RunStore", "StoreConnection", "default_home"]


@retry_operations
class RunStore(ExperimentsMixin, RunsMixin, MetricsMixin, ItemsMixin, SweepsMixin, MetaMixin):
    """Everything a training run produces, in one database (SQLite in WAL mode under a home
    folder, or PostgreSQL: ``url`` or ``$NCALAB_STORE``) and the run folders under the home.

    ``RunStore(home)`` opens (creating or upgrading) the store; ``RunStore(home, readonly=True)``
    only reads. Every public operation is retried whole, for a bounded time, when a database
    server goes away under it before its commit (``retry_operations``). Each mixin holds the
    methods of one table group; all of them share the one connection of StoreConnection (see
    there for the locking rules). It is both a StoreReader and a StoreWriter
    (ncalab.store.interfaces).
    """
