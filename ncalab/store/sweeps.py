"""The store's sweeps: groups of experiments queued together from one spec."""

from __future__ import annotations

import json
import time

from sqlalchemy import delete, literal_column, select, update
from sqlmodel import col

from ncalab.store.connection import StoreConnection, fresh_id, get_row
from ncalab.store.schema import Experiment, Sweep


class SweepsMixin(StoreConnection):
    """Rows of the sweeps table, and the experiments that point to each."""

    def create_sweep(self, spec: dict, name: str | None = None) -> Sweep:
        with self._write() as s:
            sweep = Sweep(id=fresh_id(s, Sweep, "s"), name=name, created_at=time.time(),
                          spec_json=json.dumps(spec, default=str))
            s.add(sweep)
        return sweep

    def set_sweep_spec(self, sweep_id: str, spec: dict) -> None:
        self._update(Sweep, sweep_id, "sweep", spec_json=json.dumps(spec, default=str))

    def get_sweep(self, sweep_id: str) -> Sweep:
        with self._read() as s:
            return get_row(s, Sweep, sweep_id, "sweep")

    def list_sweeps(self) -> list[Sweep]:
        with self._read() as s:
            return list(s.scalars(select(Sweep).order_by(col(Sweep.created_at).desc(), literal_column("rowid").desc())))

    def experiments_of_sweep(self, sweep_id: str) -> list[Experiment]:
        """Oldest first: the order the sweep queued them."""
        with self._read() as s:
            q = select(Experiment).where(col(Experiment.sweep_id) == sweep_id).order_by(
                col(Experiment.created_at), literal_column("rowid"))
            return list(s.scalars(q))

    def delete_sweep(self, sweep_id: str) -> None:
        """Forget a sweep; experiments still pointing to it are kept, ungrouped."""
        with self._write() as s:
            get_row(s, Sweep, sweep_id, "sweep")
            s.execute(update(Experiment).where(col(Experiment.sweep_id) == sweep_id).values(sweep_id=None))
            s.execute(delete(Sweep).where(col(Sweep.id) == sweep_id))
