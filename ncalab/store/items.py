"""The store's evaluation items: the per-item results of a downstream evaluation run."""

from __future__ import annotations

import json

from sqlalchemy import delete, literal_column, select
from sqlmodel import col

from ncalab.store.connection import StoreConnection, get_row
from ncalab.store.schema import EvalItem, Run, table_of


class ItemsMixin(StoreConnection):
    """Rows of the eval_items table, one per (run, item)."""

    def add_eval_item(self, run_id: str, item: str, subtask: str, samples: int, correct: int, choices: int = 0,
                      detail: dict | None = None) -> None:
        row = {"run_id": run_id, "item": item, "subtask": subtask, "samples": int(samples), "correct": int(correct),
               "choices": int(choices), "detail_json": json.dumps(detail or {}, default=str)}
        stmt = self.backend.insert(EvalItem).values(**row)
        with self._write() as s:
            get_row(s, Run, run_id, "run")
            s.execute(stmt.on_conflict_do_update(index_elements=["run_id", "item"], set_=row))

    def replace_eval_items(self, run_id: str, subtasks: list[str], rows: list[dict]) -> None:
        """In one transaction: drop the run's items of these subtasks, then add `rows` (dicts of
        add_eval_item's arguments): results measured again, many items at once."""
        values = [{"run_id": run_id, "item": r["item"], "subtask": r["subtask"], "samples": int(r["samples"]),
                   "correct": int(r["correct"]), "choices": int(r.get("choices", 0)),
                   "detail_json": json.dumps(r.get("detail") or {}, default=str)} for r in rows]
        with self._write() as s:
            get_row(s, Run, run_id, "run")
            s.execute(delete(EvalItem).where(col(EvalItem.run_id) == run_id, col(EvalItem.subtask).in_(subtasks)))
            if values:
                s.execute(table_of(EvalItem).insert(), values)  # executemany: one statement, many rows

    def eval_items(self, run_id: str) -> list[EvalItem]:
        with self._read() as s:
            return list(s.scalars(select(EvalItem).where(col(EvalItem.run_id) == run_id).order_by(literal_column("rowid"))))

    def delete_eval_items(self, run_id: str) -> None:
        with self._write() as s:
            s.execute(delete(EvalItem).where(col(EvalItem.run_id) == run_id))
