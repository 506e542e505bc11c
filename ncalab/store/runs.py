"""The store's runs: creating and reading them, their lifecycle, and the reuse of identical runs."""

from __future__ import annotations

import json
import time
from pathlib import Path

from sqlalchemy import delete, literal_column, select, text, update
from sqlmodel import col

import ncalab
from ncalab.errors import NcalabError
from ncalab.store.connection import StoreConnection, fresh_id, get_row
from ncalab.store.names import FINAL_STATUSES, RUN_KIND, RUN_KINDS
from ncalab.store.schema import EvalItem, Experiment, LatestMetric, MetricPoint, Run


class RunsMixin(StoreConnection):
    """Rows of the runs table, each with its folder under the home."""

    def create_run(self, experiment_id: str, kind: str, config: dict, total_tokens: int,
                   reuse_key: str | None = None) -> Run:
        if kind not in RUN_KINDS and not RUN_KIND.match(kind):
            raise NcalabError(f"unknown run kind {kind!r}; expected one of {', '.join(RUN_KINDS)} or a stage's name")
        with self._write() as s:
            get_row(s, Experiment, experiment_id, "experiment")
            run_id = fresh_id(s, Run, "r")
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

    def get_run(self, run_id: str) -> Run:
        with self._read() as s:
            return get_row(s, Run, run_id, "run")

    def runs_of(self, exp_id: str) -> list[Run]:
        with self._read() as s:
            q = select(Run).where(col(Run.experiment_id) == exp_id).order_by(col(Run.created_at), literal_column("rowid"))
            return list(s.scalars(q))

    # ---- reuse of identical runs ----------------------------------------------------------------

    def claim_run(self, run_id: str, pid: int, host: str, device: str, alive) -> Run | str:
        """Start a run, unless an identical one (same reuse key) has its result or is making it.

        Returns a completed identical Run to take the result from, ``"wait"`` while another
        live process trains one (``alive(run)`` tells), or ``"train"`` after marking this run
        running. One write transaction, so two jobs never both decide to train the same thing.
        """
        now = time.time()
        with self._write() as s:
            run = get_row(s, Run, run_id, "run")
            if run.reuse_key:
                twins = s.execute(select(Run).where(col(Run.reuse_key) == run.reuse_key, col(Run.id) != run_id,
                                                    col(Run.status).in_(("completed", "running")))
                                  .order_by(col(Run.finished_at))).scalars().all()
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
            s.execute(delete(MetricPoint).where(col(MetricPoint.run_id) == run_id))
            s.execute(delete(LatestMetric).where(col(LatestMetric.run_id) == run_id))
            s.execute(text("INSERT INTO metric_points (run_id, name, step, tokens, wall_time, value) "
                           "SELECT :dst, name, step, tokens, wall_time, value FROM metric_points WHERE run_id = :src"), args)
            s.execute(text("INSERT INTO latest_metrics (run_id, name, value, step, tokens, wall_time) "
                           "SELECT :dst, name, value, step, tokens, wall_time FROM latest_metrics WHERE run_id = :src"), args)
            s.execute(update(Run).where(col(Run.id) == run_id).values(
                status="completed", source_run_id=source.id, step=source.step, tokens=source.tokens,
                device=source.device, started_at=now, finished_at=now, heartbeat_at=now, pid=None, error=None))

    def reset_run(self, run_id: str) -> None:
        """Back to queued with no results (an evaluation to do again with other settings)."""
        with self._write() as s:
            get_row(s, Run, run_id, "run")
            for table in (EvalItem, MetricPoint, LatestMetric):
                s.execute(delete(table).where(col(table.run_id) == run_id))
            s.execute(update(Run).where(col(Run.id) == run_id).values(status="queued", error=None, finished_at=None, pid=None,
                                                               step=0, tokens=0, source_run_id=None))
