"""The store's metrics: every logged point of a run, and the latest value of each metric."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import delete, or_, select, text
from sqlmodel import col

from ncalab.store.connection import StoreConnection, get_row
from ncalab.store.schema import LatestMetric, MetricPoint, Run, table_of


def _nan_to_none(x: float) -> float | None:
    x = float(x)
    return None if math.isnan(x) else x


def _none_to_nan(x: float | None) -> float:
    return math.nan if x is None else x


def _escape_like(text: str) -> str:
    """``text`` matched literally by LIKE ... ESCAPE '\\' (its _ and % are not wildcards)."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class MetricsMixin(StoreConnection):
    """Rows of metric_points and latest_metrics (NaN is stored as NULL and read back as NaN)."""

    def log_metrics(self, run_id: str, points: Iterable[Mapping[str, Any]]) -> None:
        """Insert a batch of points (dicts: name, step, tokens, wall_time, value) in one transaction."""
        rows: list[dict[str, Any]] = [
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
        upsert = self.backend.insert(LatestMetric)
        upsert = upsert.on_conflict_do_update(
            index_elements=["run_id", "name"],
            set_={c: upsert.excluded[c] for c in ("value", "step", "tokens", "wall_time")},
            # Keep the stored one if it is further along (e.g. a late batch from before a resume).
            where=upsert.excluded.tokens >= col(LatestMetric.tokens),
        )
        with self._write() as s:
            get_row(s, Run, run_id, "run")
            s.execute(table_of(MetricPoint).insert(), rows)  # executemany: one statement, many rows
            s.execute(upsert, list(newest.values()))

    def metrics(self, run_id: str, name: str | None = None) -> list[MetricPoint]:
        q = select(MetricPoint).where(col(MetricPoint.run_id) == run_id)
        if name is not None:
            q = q.where(col(MetricPoint.name) == name)
        with self._read() as s:
            return list(s.scalars(q.order_by(col(MetricPoint.tokens), col(MetricPoint.id))))

    def curve(self, run_id: str, name: str) -> tuple[list[int], list[float]]:
        """(tokens, values) of one metric in token order; two columns, no ORM objects, so it stays fast."""
        q = (
            select(col(MetricPoint.tokens), col(MetricPoint.value))
            .where(col(MetricPoint.run_id) == run_id, col(MetricPoint.name) == name)
            .order_by(col(MetricPoint.tokens), col(MetricPoint.id))
        )
        with self._conn() as conn:
            rows = conn.execute(q).all()
        return [r[0] for r in rows], [_none_to_nan(r[1]) for r in rows]

    def series(self, run_ids: Iterable[str], names: Iterable[str] = (),
               prefixes: Iterable[str] = ()) -> dict[tuple[str, str], tuple[list[int], list[int], list[float]]]:
        """(steps, tokens, values) in token order of every metric named in ``names`` or starting
        with one of ``prefixes``, for each of ``run_ids``, keyed by (run id, name): many curves in
        one query (a report of a sweep reads dozens)."""
        run_ids, names, prefixes = list(run_ids), list(names), list(prefixes)
        if not run_ids or not (names or prefixes):
            return {}
        wanted = [col(MetricPoint.name).in_(names)] if names else []
        wanted += [col(MetricPoint.name).like(_escape_like(p) + "%", escape="\\") for p in prefixes]
        q = (
            select(col(MetricPoint.run_id), col(MetricPoint.name), col(MetricPoint.step), col(MetricPoint.tokens), col(MetricPoint.value))
            .where(col(MetricPoint.run_id).in_(run_ids), or_(*wanted))
            .order_by(col(MetricPoint.run_id), col(MetricPoint.name), col(MetricPoint.tokens), col(MetricPoint.id))
        )
        out: dict[tuple[str, str], tuple[list[int], list[int], list[float]]] = {}
        with self._conn() as conn:
            for run_id, name, step, tokens, value in conn.execute(q):
                steps, toks, values = out.setdefault((run_id, name), ([], [], []))
                steps.append(step)
                toks.append(tokens)
                values.append(_none_to_nan(value))
        return out

    def latest_metrics(self, run_id: str) -> dict[str, float]:
        with self._conn() as conn:
            rows = conn.execute(select(col(LatestMetric.name), col(LatestMetric.value)).where(col(LatestMetric.run_id) == run_id))
            return {name: _none_to_nan(value) for name, value in rows}

    def delete_metrics_named(self, run_id: str, prefixes: tuple[str, ...]) -> None:
        """Drop every point whose name starts with one of ``prefixes`` (an evaluation done again)."""
        with self._write() as s:
            for prefix in prefixes:
                like = _escape_like(prefix) + "%"
                for table in (MetricPoint, LatestMetric):
                    s.execute(delete(table).where(col(table.run_id) == run_id, col(table.name).like(like, escape="\\")))

    def delete_metrics_after(self, run_id: str, tokens: int) -> None:
        """Drop the points past ``tokens`` (resuming from a checkpoint) and rebuild that run's LatestMetric."""
        with self._write() as s:
            s.execute(delete(MetricPoint).where(col(MetricPoint.run_id) == run_id, col(MetricPoint.tokens) > int(tokens)))
            s.execute(delete(LatestMetric).where(col(LatestMetric.run_id) == run_id))
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
