"""The run store's tables: experiments, their runs, metric points and bookkeeping.

Ids are short strings (``e-1a2b3c4d``, ``r-5e6f7a8b``) so they are easy to type in the CLI.
Times are unix floats (``time.time()``).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, Table
from sqlmodel import Field, SQLModel

# 64-bit integers for counts that outgrow 2**31 at paper scale (tokens) on PostgreSQL; SQLite's
# INTEGER is 64-bit already, and only INTEGER makes its primary key the rowid (autoincrement).
BIG = BigInteger().with_variant(Integer(), "sqlite")


def new_id(prefix: str) -> str:
    """``prefix-`` + 8 hex chars from a uuid4; the store retries on the (rare) collision."""
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class Experiment(SQLModel, table=True):
    __tablename__ = "experiments"

    id: str = Field(primary_key=True)
    name: str | None = None
    preset: str = Field(index=True)
    scale: str
    seed: int
    status: str = Field(index=True)
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    config_json: str  # the resolved config, as JSON
    summary_json: str | None = None
    sweep_id: str | None = Field(default=None, index=True)
    tags_json: str = "[]"
    note: str | None = None
    # The job process working on it (schema 2): lets any command tell a dead job from a live one.
    pid: int | None = None
    host: str | None = None
    heartbeat_at: float | None = None
    error: str | None = None

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_json)

    @property
    def summary(self) -> dict[str, Any] | None:
        return None if self.summary_json is None else json.loads(self.summary_json)

    @property
    def tags(self) -> list[str]:
        return json.loads(self.tags_json)


class Run(SQLModel, table=True):
    __tablename__ = "runs"

    id: str = Field(primary_key=True)
    experiment_id: str = Field(foreign_key="experiments.id", index=True)
    kind: str  # one of RUN_KINDS, or a later stage's (RUN_KIND)
    status: str
    created_at: float
    started_at: float | None = None
    finished_at: float | None = None
    heartbeat_at: float | None = None
    pid: int | None = None
    host: str | None = None
    device: str | None = None
    ncalab_version: str
    config_json: str
    folder: str  # relative to the store's home, so a home can be moved as a whole
    error: str | None = None
    step: int = Field(default=0, sa_type=BIG)
    tokens: int = Field(default=0, sa_type=BIG)
    total_tokens: int = Field(default=0, sa_type=BIG)
    # Schema 3: runs whose results would be identical share a reuse key (a hash of everything
    # that determines them); a run that took another's result names it in source_run_id.
    reuse_key: str | None = Field(default=None, index=True)
    source_run_id: str | None = None

    @property
    def config(self) -> dict[str, Any]:
        return json.loads(self.config_json)


class MetricPoint(SQLModel, table=True):
    __tablename__ = "metric_points"
    # Every read is "one run, one metric, in token order": this index answers it without a sort.
    __table_args__ = (Index("ix_metric_points_run_name_tokens", "run_id", "name", "tokens"),)

    id: int | None = Field(default=None, primary_key=True, sa_type=BIG)
    run_id: str = Field(foreign_key="runs.id")
    name: str
    step: int = Field(sa_type=BIG)
    tokens: int = Field(sa_type=BIG)
    wall_time: float  # seconds since the run started
    # Nullable because SQLite stores NaN as NULL; a diverged loss must not crash the logger.
    value: float | None = None


class EvalItem(SQLModel, table=True):
    """One scored item of a downstream evaluation run (schema 4): n samples, c correct.
    Items are written as they finish, so an interrupted evaluation never samples them again."""

    __tablename__ = "eval_items"

    run_id: str = Field(foreign_key="runs.id", primary_key=True)
    item: str = Field(primary_key=True)  # the task's item id, e.g. HumanEval/12
    subtask: str  # what the task averages over first (a BIG-bench subtask; the task otherwise)
    samples: int
    correct: int
    choices: int = 0  # choices of a multiple-choice item (chance = 1/choices), 0 otherwise
    detail_json: str = "{}"  # per-sample outcomes, short


class LatestMetric(SQLModel, table=True):
    """The newest point of each metric of each run, so listings never scan MetricPoint."""

    __tablename__ = "latest_metrics"

    run_id: str = Field(foreign_key="runs.id", primary_key=True)
    name: str = Field(primary_key=True)
    value: float | None = None  # NULL = NaN, as in MetricPoint
    step: int = Field(sa_type=BIG)
    tokens: int = Field(sa_type=BIG)
    wall_time: float


class Sweep(SQLModel, table=True):
    """A grid of settings times seeds; its experiments point to it with sweep_id."""

    __tablename__ = "sweeps"

    id: str = Field(primary_key=True)
    name: str | None = None
    created_at: float
    spec_json: str  # preset, scale, base overrides, grid, seeds

    @property
    def spec(self) -> dict[str, Any]:
        return json.loads(self.spec_json)


class StoreMeta(SQLModel, table=True):
    __tablename__ = "store_meta"

    key: str = Field(primary_key=True)
    value: str


def table_of(model: type[SQLModel]) -> Table:
    """The table of a table model (SQLModel gives each one; its type hints do not say so)."""
    return SQLModel.metadata.tables[str(model.__tablename__)]


TABLES = [table_of(m) for m in (Experiment, Run, MetricPoint, LatestMetric, Sweep, StoreMeta, EvalItem)]
