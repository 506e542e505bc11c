"""The run store: experiments, runs and their metrics in one database (SQLite under a home folder,
or PostgreSQL through NCALAB_STORE), and the runs' folders under the home folder.

The names below load on first use (PEP 562): they bring in SQLModel and SQLAlchemy, which the
quick commands that only list (store/quick.py) do without. Inside ncalab, modules import from
the submodule that defines a name; `from ncalab.store import RunStore` is for scripts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ncalab.store.follower import FollowerStore
    from ncalab.store.interfaces import StoreReader, StoreWriter
    from ncalab.store.location import default_home
    from ncalab.store.migrations import SCHEMA_VERSION
    from ncalab.store.names import STATUSES
    from ncalab.store.schema import EvalItem, Experiment, LatestMetric, MetricPoint, Run, StoreMeta, Sweep
    from ncalab.store.store import RunStore

_HOMES = {
    "FollowerStore": "follower", "StoreReader": "interfaces", "StoreWriter": "interfaces",
    "default_home": "location", "SCHEMA_VERSION": "migrations", "STATUSES": "names",
    **dict.fromkeys(("EvalItem", "Experiment", "LatestMetric", "MetricPoint", "Run", "StoreMeta", "Sweep"), "schema"),
    "RunStore": "store",
}
__all__ = [
    "SCHEMA_VERSION", "STATUSES", "EvalItem", "Experiment", "FollowerStore", "LatestMetric", "MetricPoint", "Run",
    "RunStore", "StoreMeta", "StoreReader", "StoreWriter", "Sweep", "default_home",
]


def __getattr__(name: str):
    if name not in _HOMES:
        raise AttributeError(f"module 'ncalab.store' has no attribute {name!r}")
    return getattr(importlib.import_module(f"ncalab.store.{_HOMES[name]}"), name)
