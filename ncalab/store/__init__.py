"""The run store: experiments, runs and their metrics in one database (SQLite under a home folder,
or PostgreSQL through NCALAB_STORE), and the runs' folders under the home folder."""

from ncalab.store.follower import FollowerStore
from ncalab.store.interfaces import StoreReader, StoreWriter
from ncalab.store.schema import STATUSES, EvalItem, Experiment, LatestMetric, MetricPoint, Run, StoreMeta, Sweep
from ncalab.store.store import SCHEMA_VERSION, RunStore, default_home

__all__ = [
    "SCHEMA_VERSION",
    "STATUSES",
    "EvalItem",
    "Experiment",
    "FollowerStore",
    "LatestMetric",
    "MetricPoint",
    "Run",
    "RunStore",
    "StoreMeta",
    "StoreReader",
    "StoreWriter",
    "Sweep",
    "default_home",
]
