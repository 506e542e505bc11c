"""The store's experiments: creating, reading, listing and deleting them, and the job claims on them."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sqlalchemy import delete, func, literal_column, select, update
from sqlmodel import col

from ncalab.errors import NcalabError
from ncalab.store.connection import StoreConnection, fresh_id, get_row, rowcount
from ncalab.store.names import FINAL_STATUSES, STATUSES
from ncalab.store.schema import EvalItem, Experiment, LatestMetric, MetricPoint, Run


class ExperimentsMixin(StoreConnection):
    """Rows of the experiments table (deleting one takes its runs and their results along)."""

    def create_experiment(
        self, preset: str, scale: str, seed: int, config: dict, name: str | None = None, sweep_id: str | None = None
    ) -> Experiment:
        with self._write() as s:
            exp = Experiment(
                id=fresh_id(s, Experiment, "e"), name=name, preset=preset, scale=scale, seed=int(seed),
                status="queued", created_at=time.time(), config_json=json.dumps(config, default=str),
                sweep_id=sweep_id,
            )
            s.add(exp)
        return exp

    def set_experiment_status(self, exp_id: str, status: str) -> None:
        if status not in STATUSES:
            raise NcalabError(f"unknown status {status!r}; expected one of {', '.join(STATUSES)}")
        with self._write() as s:
            exp = get_row(s, Experiment, exp_id, "experiment")
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
            exp = get_row(s, Experiment, exp_id, "experiment")
            tags = json.loads(exp.tags_json)
            if tag not in tags:
                exp.tags_json = json.dumps([*tags, tag])

    def set_note(self, exp_id: str, text: str | None) -> None:
        self._update(Experiment, exp_id, "experiment", note=text)

    def get_experiment(self, exp_id: str) -> Experiment:
        with self._read() as s:
            return get_row(s, Experiment, exp_id, "experiment")

    def list_experiments(
        self, status: str | None = None, preset: str | None = None, limit: int | None = None
    ) -> list[Experiment]:
        """Newest first; rowid breaks ties between experiments created in the same instant."""
        q = select(Experiment).order_by(col(Experiment.created_at).desc(), literal_column("rowid").desc())
        if status is not None:
            q = q.where(col(Experiment.status) == status)
        if preset is not None:
            q = q.where(col(Experiment.preset) == preset)
        if limit is not None:
            q = q.limit(limit)
        with self._read() as s:
            return list(s.scalars(q))

    # ---- jobs ------------------------------------------------------------------------------------

    def claim_experiment(self, exp_id: str, pid: int, host: str, max_running: int | None = None) -> bool:
        """Atomically move a queued experiment to running for this process; False if another
        process claimed it first, it is not queued, or ``max_running`` experiments already run."""
        now = time.time()
        with self._write() as s:
            if max_running is not None:
                running = s.execute(select(func.count()).select_from(Experiment).where(col(Experiment.status) == "running")).scalar() or 0
                if running >= max_running:
                    return False
            res = s.execute(
                update(Experiment).where(col(Experiment.id) == exp_id, col(Experiment.status) == "queued").values(
                    status="running", pid=pid, host=host, heartbeat_at=now, error=None, finished_at=None,
                    started_at=func.coalesce(col(Experiment.started_at), now)))
            return rowcount(res) == 1

    def touch_experiment(self, exp_id: str) -> None:
        with self._write() as s:
            s.execute(update(Experiment).where(col(Experiment.id) == exp_id).values(heartbeat_at=time.time()))

    def finish_experiment(self, exp_id: str, status: str, error: str | None = None) -> None:
        if status not in FINAL_STATUSES:
            raise NcalabError(f"not a final status: {status!r}")
        with self._write() as s:
            s.execute(update(Experiment).where(col(Experiment.id) == exp_id).values(
                status=status, error=error, finished_at=time.time(), pid=None))
            if status != "completed":  # runs left mid-way share the experiment's fate
                s.execute(update(Run).where(col(Run.experiment_id) == exp_id, col(Run.status).in_(("running", "queued"))).values(
                    status=status, finished_at=time.time(), pid=None))

    def requeue_experiment(self, exp_id: str) -> None:
        """Back to the queue: the experiment and every run that did not complete."""
        with self._write() as s:
            s.execute(update(Experiment).where(col(Experiment.id) == exp_id).values(
                status="queued", error=None, finished_at=None, pid=None))
            s.execute(update(Run).where(col(Run.experiment_id) == exp_id, col(Run.status) != "completed").values(
                status="queued", error=None, finished_at=None, pid=None))

    def delete_experiment(self, exp_id: str) -> list[Path]:
        """Remove an experiment, its runs and their metrics in one transaction; returns the run
        folders for the caller to delete (files go only after the rows are gone)."""
        with self._write() as s:
            get_row(s, Experiment, exp_id, "experiment")
            runs = s.execute(select(Run).where(col(Run.experiment_id) == exp_id)).scalars().all()
            ids = [r.id for r in runs]
            folders = [self.home / r.folder for r in runs]
            if ids:
                s.execute(delete(EvalItem).where(col(EvalItem.run_id).in_(ids)))
                s.execute(delete(MetricPoint).where(col(MetricPoint.run_id).in_(ids)))
                s.execute(delete(LatestMetric).where(col(LatestMetric.run_id).in_(ids)))
                s.execute(delete(Run).where(col(Run.id).in_(ids)))
            s.execute(delete(Experiment).where(col(Experiment.id) == exp_id))
        return folders
