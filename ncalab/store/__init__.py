"""The run store: experiments, runs and their metrics in one SQLite database under a home folder."""

from ncalab.store.schema import STATUSES, EvalItem, Experiment, LatestMetric, MetricPoint, Run, StoreMeta, Sweep
from ncalab.store.store import SCHEMA_VERSION, RunStore, default_home

__all__ = [
    "SCHEMA_VERSION",
    "STATUSES",
    "EvalItem",
    "Experiment",
    "LatestMetric",
    "MetricPoint",
    "Run",
    "RunStore",
    "StoreMeta",
    "Sweep",
    "default_home",
]
