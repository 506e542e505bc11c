"""The store as a process other than the main one in a distributed run sees it: it reads, never writes."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any

from ncalab.errors import NcalabError
from ncalab.store.interfaces import StoreReader
from ncalab.store.schema import EvalItem, Experiment, MetricPoint, Run, Sweep


def _main_only(what: str) -> NcalabError:
    return NcalabError(f"only the main process {what}; a follower process cannot")


class FollowerStore:
    """Reads go through the real store; every write of StoreWriter is the main process's job, so
    here it changes nothing. A write that returns nothing is skipped, one whose answer means
    nothing changed gives that answer (not claimed, nothing deleted), and one that must hand back
    a new row or a claim decision is an error."""

    def __init__(self, store: StoreReader):
        self._store = store

    @property
    def home(self) -> Path:
        return self._store.home

    # ---- reads: through the real store -----------------------------------------------------------

    def get_experiment(self, exp_id: str) -> Experiment:
        return self._store.get_experiment(exp_id)

    def list_experiments(
        self, status: str | None = None, preset: str | None = None, limit: int | None = None
    ) -> list[Experiment]:
        return self._store.list_experiments(status=status, preset=preset, limit=limit)

    def get_run(self, run_id: str) -> Run:
        return self._store.get_run(run_id)

    def runs_of(self, exp_id: str) -> list[Run]:
        return self._store.runs_of(exp_id)

    def run_dir(self, run: Run) -> Path:
        return self._store.run_dir(run)

    def metrics(self, run_id: str, name: str | None = None) -> list[MetricPoint]:
        return self._store.metrics(run_id, name)

    def curve(self, run_id: str, name: str) -> tuple[list[int], list[float]]:
        return self._store.curve(run_id, name)

    def series(self, run_ids, names=(), prefixes=()) -> dict:
        return self._store.series(run_ids, names, prefixes)

    def latest_metrics(self, run_id: str) -> dict[str, float]:
        return self._store.latest_metrics(run_id)

    def eval_items(self, run_id: str) -> list[EvalItem]:
        return self._store.eval_items(run_id)

    def get_sweep(self, sweep_id: str) -> Sweep:
        return self._store.get_sweep(sweep_id)

    def list_sweeps(self) -> list[Sweep]:
        return self._store.list_sweeps()

    def experiments_of_sweep(self, sweep_id: str) -> list[Experiment]:
        return self._store.experiments_of_sweep(sweep_id)

    def get_meta(self, key: str) -> str | None:
        return self._store.get_meta(key)

    # ---- writes: the main process's job -----------------------------------------------------------

    def create_experiment(
        self, preset: str, scale: str, seed: int, config: dict, name: str | None = None, sweep_id: str | None = None
    ) -> Experiment:
        raise _main_only("creates experiments")

    def set_experiment_status(self, exp_id: str, status: str) -> None:
        pass

    def set_config(self, exp_id: str, config: dict) -> None:
        pass

    def set_summary(self, exp_id: str, summary: dict) -> None:
        pass

    def tag(self, exp_id: str, tag: str) -> None:
        pass

    def set_note(self, exp_id: str, text: str | None) -> None:
        pass

    def claim_experiment(self, exp_id: str, pid: int, host: str, max_running: int | None = None) -> bool:
        return False

    def touch_experiment(self, exp_id: str) -> None:
        pass

    def finish_experiment(self, exp_id: str, status: str, error: str | None = None) -> None:
        pass

    def requeue_experiment(self, exp_id: str) -> None:
        pass

    def delete_experiment(self, exp_id: str) -> list[Path]:
        return []

    def create_run(self, experiment_id: str, kind: str, config: dict, total_tokens: int,
                   reuse_key: str | None = None) -> Run:
        raise _main_only("creates runs")

    def start_run(self, run_id: str, pid: int, host: str, device: str) -> None:
        pass

    def set_run_total(self, run_id: str, total_tokens: int) -> None:
        pass

    def heartbeat(self, run_id: str, step: int, tokens: int) -> None:
        pass

    def finish_run(self, run_id: str, status: str, error: str | None = None) -> None:
        pass

    def claim_run(self, run_id: str, pid: int, host: str, device: str, alive: Callable[[Run], bool]) -> Run | str:
        raise _main_only("claims runs (the others follow its decision)")

    def adopt_run(self, run_id: str, source: Run) -> None:
        pass

    def reset_run(self, run_id: str) -> None:
        pass

    def log_metrics(self, run_id: str, points: Iterable[Mapping[str, Any]]) -> None:
        pass

    def delete_metrics_named(self, run_id: str, prefixes: tuple[str, ...]) -> None:
        pass

    def delete_metrics_after(self, run_id: str, tokens: int) -> None:
        pass

    def add_eval_item(self, run_id: str, item: str, subtask: str, samples: int, correct: int, choices: int = 0,
                      detail: dict | None = None) -> None:
        pass

    def delete_eval_items(self, run_id: str) -> None:
        pass

    def replace_eval_items(self, run_id: str, subtasks: list[str], rows: list[dict]) -> None:
        pass

    def create_sweep(self, spec: dict, name: str | None = None) -> Sweep:
        raise _main_only("creates sweeps")

    def set_sweep_spec(self, sweep_id: str, spec: dict) -> None:
        pass

    def delete_sweep(self, sweep_id: str) -> None:
        pass

    def set_meta(self, key: str, value: str) -> None:
        pass
