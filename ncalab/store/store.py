"""RunStore: everything a training run produces, in one SQLite database (WAL mode) under a home folder.

Several processes (trainers, the TUI, the CLI) open the same home at once. Two rules keep them
from tripping on "database is locked":

* every connection waits up to 30 s for a lock (``busy_timeout``) instead of failing at once;
* every write transaction starts with ``BEGIN IMMEDIATE``, so it takes the write lock first and
  never has to upgrade a read snapshot (an upgrade that fails with SQLITE_BUSY without waiting).

Reads use plain deferred transactions: in WAL mode readers never block writers nor each other.
Open a RunStore in each process (after fork/spawn), never share one across processes.

``RunStore(home, readonly=True)`` only reads (a long-lived browser such as the TUI): SQLite opens
the file read-only, nothing creates or upgrades the schema, and any write is refused.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import URL, Connection, Engine, delete, event, func, inspect, literal_column, select, text, update
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, SQLModel, create_engine

import ncalab
from ncalab.errors import NcalabError
from ncalab.store.schema import (
    FINAL_STATUSES,
    RUN_KIND,
    RUN_KINDS,
    STATUSES,
    TABLES,
    EvalItem,
    Experiment,
    LatestMetric,
    MetricPoint,
    Run,
    StoreMeta,
    Sweep,
    new_id,
)

SCHEMA_VERSION = 4
DB_NAME = "ncalab.db"
_IMMEDIATE = "ncalab_immediate"  # execution option that marks the write engine

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


def default_home() -> Path:
    """``$NCALAB_HOME``, else ``./runs`` (relative to the current directory)."""
    return Path(os.environ.get("NCALAB_HOME") or "runs")


def _migrate(conn: Connection, from_version: int) -> None:
    """Upgrade the schema in place, one version at a time, up to SCHEMA_VERSION."""
    for v in range(from_version, SCHEMA_VERSION):
        step = MIGRATIONS.get(v)
        if step is None:
            raise NcalabError(f"no migration from run store schema {v} to {v + 1}; this store cannot be upgraded")
        step(conn)


def _nan_to_none(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _none_to_nan(x: float | None) -> float:
    return math.nan if x is None else x


class RunStore:
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
                _migrate(conn, version)
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

    def _dispose(self) -> None:
        engine = getattr(self, "_engine", None)
        if engine is not None:
            engine.dispose()

    def close(self) -> None:
        self._dispose()

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- experiments and runs ----------------------------------------------------------------

    def create_experiment(
        self, preset: str, scale: str, seed: int, config: dict, name: str | None = None, sweep_id: str | None = None
    ) -> Experiment:
        with self._write() as s:
            exp = Experiment(
                id=_fresh_id(s, Experiment, "e"), name=name, preset=preset, scale=scale, seed=int(seed),
                status="queued", created_at=time.time(), config_json=json.dumps(config, default=str),
                sweep_id=sweep_id,
            )
            s.add(exp)
        return exp

    def create_run(self, experiment_id: str, kind: str, config: dict, total_tokens: int,
                   reuse_key: str | None = None) -> Run:
        if kind not in RUN_KINDS and not RUN_KIND.match(kind):
            raise NcalabError(f"unknown run kind {kind!r}; expected one of {', '.join(RUN_KINDS)} or a stage's name")
        with self._write() as s:
            _get(s, Experiment, experiment_id, "experiment")
            run_id = _fresh_id(s, Run, "r")
            folder = Path("experiments") / experiment_id / kind
            run = Run(
                id=run_id, experiment_id=experiment_id, kind=kind, status="queued", created_at=time.time(),
                ncalab_version=ncalab.__version__, config_json=json.dumps(config, default=str),
                folder=folder.as_posix(), total_tokens=int(total_tokens), reuse_key=reuse_key,
            )
            s.add(run)
            # Inside the transaction: if the folder cannot be made, no row is left behind.
            try:
                (self.home / folder).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise NcalabError(f"cannot create the run folder {self.home / folder}: {e.strerror or e}") from None
        return run

    def run_dir(self, run: Run) -> Path:
        return self.home / run.folder

    def start_run(self, run_id: str, pid: int, host: str, device: str) -> None:
        now = time.time()
        self._update(Run, run_id, "run", status="running", started_at=now, heartbeat_at=now,
                     pid=pid, host=host, device=device)

    def set_run_total(self, run_id: str, total_tokens: int) -> None:
        """A run whose budget is known only when it starts (fine-tuning: once its data is tokenized)."""
        self._update(Run, run_id, "run", total_tokens=int(total_tokens))

    def heartbeat(self, run_id: str, step: int, tokens: int) -> None:
        self._update(Run, run_id, "run", step=int(step), tokens=int(tokens), heartbeat_at=time.time())

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        if status not in FINAL_STATUSES:
            raise NcalabError(f"a run cannot finish as {status!r}; expected one of {', '.join(FINAL_STATUSES)}")
        self._update(Run, run_id, "run", status=status, error=error, finished_at=time.time())

    def set_experiment_status(self, exp_id: str, status: str) -> None:
        if status not in STATUSES:
            raise NcalabError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        with self._write() as s:
            exp = _get(s, Experiment, exp_id, "experiment")
            exp.status = status
            # The first time it runs / ends is what the listings show.
            if status == "running" and exp.started_at is None:
                exp.started_at = time.time()
            if status in FINAL_STATUSES:
                exp.finished_at = time.time()

    def set_config(self, exp_id: str, config: dict) -> None:
        """Replace an experiment's stored config (later stages added to a finished experiment)."""
        self._update(Experiment, exp_id, "experiment", config_json=json.dumps(config, default=str))

    def set_summary(self, exp_id: str, summary: dict) -> None:
        self._update(Experiment, exp_id, "experiment", summary_json=json.dumps(summary, default=str))

    def tag(self, exp_id: str, tag: str) -> None:
        with self._write() as s:
            exp = _get(s, Experiment, exp_id, "experiment")
            tags = json.loads(exp.tags_json)
            if tag not in tags:
                exp.tags_json = json.dumps([*tags, tag])

    def set_note(self, exp_id: str, text: str | None) -> None:
        self._update(Experiment, exp_id, "experiment", note=text)

    def _update(self, model: type[SQLModel], id_: str, what: str, **values: Any) -> None:
        """One UPDATE by primary key, no read first (heartbeats are frequent)."""
        with self._write() as s:
            result = s.execute(update(model).where(model.id == id_).values(**values))
            if result.rowcount == 0:
                raise NcalabError(f"no {what} with id {id_}")

    def get_experiment(self, exp_id: str) -> Experiment:
        with self._read() as s:
            return _get(s, Experiment, exp_id, "experiment")

    def get_run(self, run_id: str) -> Run:
        with self._read() as s:
            return _get(s, Run, run_id, "run")

    def runs_of(self, exp_id: str) -> list[Run]:
        with self._read() as s:
            q = select(Run).where(Run.experiment_id == exp_id).order_by(Run.created_at, literal_column("rowid"))
            return list(s.scalars(q))

    def list_experiments(
        self, status: str | None = None, preset: str | None = None, limit: int | None = None
    ) -> list[Experiment]:
        """Newest first; rowid breaks ties between experiments created in the same instant."""
        q = select(Experiment).order_by(Experiment.created_at.desc(), literal_column("rowid").desc())
        if status is not None:
            q = q.where(Experiment.status == status)
        if preset is not None:
            q = q.where(Experiment.preset == preset)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as s:
            return list(s.scalars(q))

    # ---- metrics -----------------------------------------------------------------------------

    def log_metrics(self, run_id: str, points: Iterable[Mapping[str, Any]]) -> None:
        """Insert a batch of points (dicts: name, step, tokens, wall_time, value) in one transaction."""
        rows = [
            {
                "run_id": run_id, "name": str(p["name"]), "step": int(p["step"]), "tokens": int(p["tokens"]),
                "wall_time": float(p["wall_time"]), "value": _nan_to_none(p["value"]),
            }
            for p in points
        ]
        if not rows:
            return
        # The newest point of each name in this batch (later wins a tie in tokens).
        newest: dict[str, dict] = {}
        for r in rows:
            if r["name"] not in newest or r["tokens"] >= newest[r["name"]]["tokens"]:
                newest[r["name"]] = r
        upsert = sqlite_insert(LatestMetric)
        upsert = upsert.on_conflict_do_update(
            index_elements=["run_id", "name"],
            set_={c: upsert.excluded[c] for c in ("value", "step", "tokens", "wall_time")},
            # Keep the stored one if it is further along (e.g. a late batch from before a resume).
            where=upsert.excluded.tokens >= LatestMetric.tokens,
        )
        with self._write() as s:
            _get(s, Run, run_id, "run")
            s.execute(MetricPoint.__table__.insert(), rows)  # executemany: one statement, many rows
            s.execute(upsert, list(newest.values()))

    def metrics(self, run_id: str, name: str | None = None) -> list[MetricPoint]:
        q = select(MetricPoint).where(MetricPoint.run_id == run_id)
        if name is not None:
            q = q.where(MetricPoint.name == name)
        with self._read() as s:
            return list(s.scalars(q.order_by(MetricPoint.tokens, MetricPoint.id)))

    def curve(self, run_id: str, name: str) -> tuple[list[int], list[float]]:
        """(tokens, values) of one metric in token order; two columns, no ORM objects, so it stays fast."""
        q = (
            select(MetricPoint.tokens, MetricPoint.value)
            .where(MetricPoint.run_id == run_id, MetricPoint.name == name)
            .order_by(MetricPoint.tokens, MetricPoint.id)
        )
        with self._engine.connect() as conn:
            rows = conn.execute(q).all()
        return [r[0] for r in rows], [_none_to_nan(r[1]) for r in rows]

    def latest_metrics(self, run_id: str) -> dict[str, float]:
        with self._engine.connect() as conn:
            rows = conn.execute(select(LatestMetric.name, LatestMetric.value).where(LatestMetric.run_id == run_id))
            return {name: _none_to_nan(value) for name, value in rows}

    # ---- reuse of identical runs ----------------------------------------------------------------

    def claim_run(self, run_id: str, pid: int, host: str, device: str, alive) -> Run | str:
        """Start a run, unless an identical one (same reuse key) has its result or is making it.

        Returns a completed identical Run to take the result from, ``"wait"`` while another
        live process trains one (``alive(run)`` tells), or ``"train"`` after marking this run
        running. One write transaction, so two jobs never both decide to train the same thing.
        """
        now = time.time()
        with self._write() as s:
            run = _get(s, Run, run_id, "run")
            if run.reuse_key:
                twins = s.execute(select(Run).where(Run.reuse_key == run.reuse_key, Run.id != run_id,
                                                    Run.status.in_(("completed", "running")))
                                  .order_by(Run.finished_at)).scalars().all()
                done = [t for t in twins if t.status == "completed"]
                if done:
                    return done[0]
                if any(alive(t) for t in twins):
                    return "wait"
            run.status, run.started_at, run.heartbeat_at = "running", now, now
            run.pid, run.host, run.device = pid, host, device
            return "train"

    def adopt_run(self, run_id: str, source: Run) -> None:
        """Complete a run with the result of an identical one: its metric points are copied
        (so this run stands alone if the source is deleted) and the source is named."""
        now = time.time()
        with self._write() as s:
            args = {"dst": run_id, "src": source.id}
            s.execute(delete(MetricPoint).where(MetricPoint.run_id == run_id))
            s.execute(delete(LatestMetric).where(LatestMetric.run_id == run_id))
            s.execute(text("INSERT INTO metric_points (run_id, name, step, tokens, wall_time, value) "
                           "SELECT :dst, name, step, tokens, wall_time, value FROM metric_points WHERE run_id = :src"), args)
            s.execute(text("INSERT INTO latest_metrics (run_id, name, value, step, tokens, wall_time) "
                           "SELECT :dst, name, value, step, tokens, wall_time FROM latest_metrics WHERE run_id = :src"), args)
            s.execute(update(Run).where(Run.id == run_id).values(
                status="completed", source_run_id=source.id, step=source.step, tokens=source.tokens,
                device=source.device, started_at=now, finished_at=now, heartbeat_at=now, pid=None, error=None))

    # ---- downstream evaluation ------------------------------------------------------------------

    def add_eval_item(self, run_id: str, item: str, subtask: str, samples: int, correct: int, choices: int = 0,
                      detail: dict | None = None) -> None:
        row = {"run_id": run_id, "item": item, "subtask": subtask, "samples": int(samples), "correct": int(correct),
               "choices": int(choices), "detail_json": json.dumps(detail or {}, default=str)}
        stmt = sqlite_insert(EvalItem).values(**row)
        with self._write() as s:
            _get(s, Run, run_id, "run")
            s.execute(stmt.on_conflict_do_update(index_elements=["run_id", "item"], set_=row))

    def reset_run(self, run_id: str) -> None:
        """Back to queued with no results (an evaluation to do again with other settings)."""
        with self._write() as s:
            _get(s, Run, run_id, "run")
            for table in (EvalItem, MetricPoint, LatestMetric):
                s.execute(delete(table).where(table.run_id == run_id))
            s.execute(update(Run).where(Run.id == run_id).values(status="queued", error=None, finished_at=None, pid=None,
                                                               step=0, tokens=0, source_run_id=None))

    def eval_items(self, run_id: str) -> list[EvalItem]:
        with self._read() as s:
            return list(s.scalars(select(EvalItem).where(EvalItem.run_id == run_id).order_by(literal_column("rowid"))))

    def delete_eval_items(self, run_id: str) -> None:
        with self._write() as s:
            s.execute(delete(EvalItem).where(EvalItem.run_id == run_id))

    # ---- sweeps ----------------------------------------------------------------------------------

    def create_sweep(self, spec: dict, name: str | None = None) -> Sweep:
        with self._write() as s:
            sweep = Sweep(id=_fresh_id(s, Sweep, "s"), name=name, created_at=time.time(),
                          spec_json=json.dumps(spec, default=str))
            s.add(sweep)
        return sweep

    def set_sweep_spec(self, sweep_id: str, spec: dict) -> None:
        self._update(Sweep, sweep_id, "sweep", spec_json=json.dumps(spec, default=str))

    def get_sweep(self, sweep_id: str) -> Sweep:
        with self._read() as s:
            return _get(s, Sweep, sweep_id, "sweep")

    def list_sweeps(self) -> list[Sweep]:
        with self._read() as s:
            return list(s.scalars(select(Sweep).order_by(Sweep.created_at.desc(), literal_column("rowid").desc())))

    def experiments_of_sweep(self, sweep_id: str) -> list[Experiment]:
        """Oldest first: the order the sweep queued them."""
        with self._read() as s:
            q = select(Experiment).where(Experiment.sweep_id == sweep_id).order_by(
                Experiment.created_at, literal_column("rowid"))
            return list(s.scalars(q))

    def delete_sweep(self, sweep_id: str) -> None:
        """Forget a sweep; experiments still pointing to it are kept, ungrouped."""
        with self._write() as s:
            _get(s, Sweep, sweep_id, "sweep")
            s.execute(update(Experiment).where(Experiment.sweep_id == sweep_id).values(sweep_id=None))
            s.execute(delete(Sweep).where(Sweep.id == sweep_id))

    # ---- jobs ------------------------------------------------------------------------------------

    def claim_experiment(self, exp_id: str, pid: int, host: str, max_running: int | None = None) -> bool:
        """Atomically move a queued experiment to running for this process; False if another
        process claimed it first, it is not queued, or ``max_running`` experiments already run."""
        now = time.time()
        with self._write() as s:
            if max_running is not None:
                running = s.execute(select(func.count()).select_from(Experiment).where(Experiment.status == "running")).scalar()
                if running >= max_running:
                    return False
            res = s.execute(
                update(Experiment).where(Experiment.id == exp_id, Experiment.status == "queued").values(
                    status="running", pid=pid, host=host, heartbeat_at=now, error=None, finished_at=None,
                    started_at=func.coalesce(Experiment.started_at, now)))
            return res.rowcount == 1

    def touch_experiment(self, exp_id: str) -> None:
        with self._write() as s:
            s.execute(update(Experiment).where(Experiment.id == exp_id).values(heartbeat_at=time.time()))

    def finish_experiment(self, exp_id: str, status: str, error: str | None = None) -> None:
        if status not in FINAL_STATUSES:
            raise NcalabError(f"not a final status: {status!r}")
        with self._write() as s:
            s.execute(update(Experiment).where(Experiment.id == exp_id).values(
                status=status, error=error, finished_at=time.time(), pid=None))
            if status != "completed":  # runs left mid-way share the experiment's fate
                s.execute(update(Run).where(Run.experiment_id == exp_id, Run.status.in_(("running", "queued"))).values(
                    status=status, finished_at=time.time(), pid=None))

    def requeue_experiment(self, exp_id: str) -> None:
        """Back to the queue: the experiment and every run that did not complete."""
        with self._write() as s:
            s.execute(update(Experiment).where(Experiment.id == exp_id).values(
                status="queued", error=None, finished_at=None, pid=None))
            s.execute(update(Run).where(Run.experiment_id == exp_id, Run.status != "completed").values(
                status="queued", error=None, finished_at=None, pid=None))

    def get_meta(self, key: str) -> str | None:
        with self._engine.connect() as conn:
            return conn.execute(select(StoreMeta.value).where(StoreMeta.key == key)).scalar()

    def set_meta(self, key: str, value: str) -> None:
        with self._write() as s:
            stmt = sqlite_insert(StoreMeta).values(key=key, value=value)
            s.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value}))

    def delete_experiment(self, exp_id: str) -> list[Path]:
        """Remove an experiment, its runs and their metrics in one transaction; returns the run
        folders for the caller to delete (files go only after the rows are gone)."""
        with self._write() as s:
            _get(s, Experiment, exp_id, "experiment")
            runs = s.execute(select(Run).where(Run.experiment_id == exp_id)).scalars().all()
            ids = [r.id for r in runs]
            folders = [self.home / r.folder for r in runs]
            if ids:
                s.execute(delete(EvalItem).where(EvalItem.run_id.in_(ids)))
                s.execute(delete(MetricPoint).where(MetricPoint.run_id.in_(ids)))
                s.execute(delete(LatestMetric).where(LatestMetric.run_id.in_(ids)))
                s.execute(delete(Run).where(Run.id.in_(ids)))
            s.execute(delete(Experiment).where(Experiment.id == exp_id))
        return folders

    def delete_metrics_named(self, run_id: str, prefixes: tuple[str, ...]) -> None:
        """Drop every point whose name starts with one of ``prefixes`` (an evaluation done again)."""
        with self._write() as s:
            for prefix in prefixes:
                like = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
                for table in (MetricPoint, LatestMetric):
                    s.execute(delete(table).where(table.run_id == run_id, table.name.like(like, escape="\\")))

    def delete_metrics_after(self, run_id: str, tokens: int) -> None:
        """Drop the points past ``tokens`` (resuming from a checkpoint) and rebuild that run's LatestMetric."""
        with self._write() as s:
            s.execute(delete(MetricPoint).where(MetricPoint.run_id == run_id, MetricPoint.tokens > int(tokens)))
            s.execute(delete(LatestMetric).where(LatestMetric.run_id == run_id))
            # Per name, the point with the most tokens (the latest id on a tie), found through the index.
            s.execute(
                text(
                    "INSERT INTO latest_metrics (run_id, name, value, step, tokens, wall_time) "
                    "SELECT run_id, name, value, step, tokens, wall_time FROM metric_points AS m "
                    "WHERE m.run_id = :run AND m.id = (SELECT m2.id FROM metric_points AS m2 "
                    "WHERE m2.run_id = m.run_id AND m2.name = m.name ORDER BY m2.tokens DESC, m2.id DESC LIMIT 1)"
                ),
                {"run": run_id},
            )


def _get(s: Session, model: type[SQLModel], id_: str, what: str):
    obj = s.get(model, id_)
    if obj is None:
        raise NcalabError(f"no {what} with id {id_}")
    return obj


def _fresh_id(s: Session, model: type[SQLModel], prefix: str) -> str:
    """A new id not yet in the table (8 hex chars collide rarely, but not never)."""
    while True:
        id_ = new_id(prefix)
        if s.get(model, id_) is None:
            return id_
