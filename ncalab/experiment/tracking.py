"""Mirroring an experiment's metrics to TensorBoard, MLflow or W&B (`runtime.track`).

The run store stays the record: a tracker gets a copy of every metric point, the config and
the summary, with tokens seen as the x axis (series indexed by something else, such as
in-context accuracy by frame or pass@k by k, keep their own index). Live mirroring runs on a
background thread behind a bounded queue, so a slow tracker never slows training (a full
queue drops that batch and counts it) and a failing one (not installed, offline, disk full)
is switched off with one warning line. `runs export --format tensorboard|mlflow` writes
stored experiments through the same trackers.

Where each writes: TensorBoard `<experiment folder>/tensorboard/<run kind>` (or
`<runtime.track_dir>/<experiment>/<run kind>`); MLflow `MLFLOW_TRACKING_URI`, else
`sqlite:///<runtime.track_dir or the store>/mlflow.db`, one MLflow run per experiment; W&B
offline files under the experiment folder (or track_dir) unless `WANDB_MODE` is set or
`WANDB_API_KEY` is there (`wandb sync` uploads offline runs).
"""

from __future__ import annotations

import json
import math
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from ncalab.config.keys import flatten
from ncalab.config.stored import stored_config
from ncalab.errors import NcalabError

if TYPE_CHECKING:
    from ncalab.store.interfaces import Store, StoreReader

EXTRA = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}  # pip extra of each tracker
LABEL = {"tensorboard": "TensorBoard", "mlflow": "MLflow", "wandb": "W&B"}
EXPERIMENT_RUN = "experiment"  # the TensorBoard run that holds the config and the summary


@dataclass(frozen=True)
class Scalar:
    """One value as a tracker plots it: ``x`` is tokens seen, or the series' own index."""

    name: str
    x: int
    value: float
    time: float  # seconds since the epoch
    axis: str  # "tokens" or "step"


def scalars(points: Iterable, origin: float | None = None) -> list[Scalar]:
    """Metric points (dicts or stored rows: name, step, tokens, wall_time, value) as scalars.

    A name with several points at one token count within ``points`` is a series indexed by
    its step (accuracy per frame, pass@k per k); every other name is plotted against tokens.
    ``origin`` is the epoch second at wall_time 0; by default the latest point is taken as now."""
    rows = [p if isinstance(p, dict) else {"name": p.name, "step": p.step, "tokens": p.tokens,
                                           "wall_time": p.wall_time, "value": p.value} for p in points]
    seen: dict[str, set[int]] = {}
    indexed: set[str] = set()
    for r in rows:
        at = seen.setdefault(r["name"], set())
        if int(r["tokens"]) in at:
            indexed.add(r["name"])
        at.add(int(r["tokens"]))
    if origin is None:
        origin = time.time() - max((float(r["wall_time"]) for r in rows), default=0.0)
    out = []
    for r in rows:
        axis = "step" if r["name"] in indexed else "tokens"
        value = math.nan if r["value"] is None else float(r["value"])
        out.append(Scalar(r["name"], int(r[axis]), value, origin + float(r["wall_time"]), axis))
    return out


def summary_values(summary: dict) -> dict[str, float]:
    """The summary's numbers, flattened to dotted keys (ppl_nca, gain, compute.nca.flops, ...)."""
    return {k: float(v) for k, v in flatten(summary).items()
            if isinstance(v, (int, float)) and not isinstance(v, bool)}


@dataclass
class Destination:
    """Where one experiment's trackers write."""

    experiment_id: str
    experiment_folder: Path  # <store>/experiments/<id>
    store_home: Path
    track_dir: Path | None = None
    name: str | None = None  # the experiment's name, if it has one
    sweep_id: str | None = None
    tags: dict = field(default_factory=dict)

    def tensorboard(self, run: str) -> Path:
        if self.track_dir is not None:
            return self.track_dir / self.experiment_id / run
        return self.experiment_folder / "tensorboard" / run

    def mlflow_uri(self) -> str:
        if os.environ.get("MLFLOW_TRACKING_URI"):
            return os.environ["MLFLOW_TRACKING_URI"]
        return f"sqlite:///{(self.track_dir or self.store_home) / 'mlflow.db'}"

    def wandb_dir(self) -> Path:
        return self.track_dir or self.experiment_folder


class Tracker(Protocol):
    name: str

    def log_config(self, config: dict) -> None: ...
    def restart(self, run: str, tokens: int) -> None: ...  # the run's curve goes on after `tokens` (-1: from the start)
    def log_points(self, run: str, values: list[Scalar]) -> None: ...
    def log_summary(self, summary: dict) -> None: ...
    def close(self, status: str) -> None: ...  # completed, failed or cancelled


def _need(module: str, tracker: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise NcalabError(f"--track {tracker} needs the {LABEL[tracker]} package: "
                          f"pip install 'ncalab[{EXTRA[tracker]}]'") from None


class TensorBoardTracker:
    """One event folder per run kind (so TensorBoard overlays the NCA and scratch curves of a
    tag), and one for the config and summary. A restarted run purges its stale points."""

    name = "tensorboard"

    def __init__(self, dest: Destination):
        _need("tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self._make, self.dest = SummaryWriter, dest
        self.writers: dict = {}
        self._writer(EXPERIMENT_RUN)  # an unwritable folder fails here, before training

    def _writer(self, run: str, purge_step: int | None = None):
        if run not in self.writers or purge_step is not None:
            if run in self.writers:
                self.writers.pop(run).close()
            self.writers[run] = self._make(str(self.dest.tensorboard(run)), purge_step=purge_step, flush_secs=30)
        return self.writers[run]

    def log_config(self, config: dict) -> None:
        text = "\n".join(f"    {k} = {json.dumps(v)}" for k, v in flatten(config).items())
        self._writer(EXPERIMENT_RUN).add_text("config", text, 0)

    def restart(self, run: str, tokens: int) -> None:
        self._writer(run, purge_step=max(int(tokens) + 1, 0))

    def log_points(self, run: str, values: list[Scalar]) -> None:
        w = self._writer(run)
        for s in values:
            w.add_scalar(s.name, s.value, s.x, walltime=s.time)

    def log_summary(self, summary: dict) -> None:
        w = self._writer(EXPERIMENT_RUN)
        w.add_text("summary", "    " + json.dumps(summary, indent=2, default=str).replace("\n", "\n    "), 0)
        for k, v in summary_values(summary).items():
            w.add_scalar(f"summary/{k}", v, 0)
        w.flush()

    def close(self, status: str) -> None:
        for w in self.writers.values():
            w.close()
        self.writers = {}


_MLFLOW_BAD = re.compile(r"[^\w\-./ :]")


def mlflow_key(run: str, name: str) -> str:
    """MLflow's metric names allow letters, digits, _ - . / : and spaces: '@' becomes '_at_'."""
    return _MLFLOW_BAD.sub("_", f"{run}/{name}".replace("@", "_at_"))


class MlflowTracker:
    """One MLflow run per experiment (found again by its tag when the experiment resumes),
    metrics named `<run kind>/<metric>`, the config as params."""

    name = "mlflow"
    BATCH = 1000  # MLflow takes at most 1,000 metrics (100 params) per log_batch

    def __init__(self, dest: Destination):
        _need("mlflow", "mlflow")
        import logging

        logging.getLogger("mlflow").setLevel(logging.WARNING)  # not its INFO lines about creating tables
        from mlflow.entities import Metric, Param
        from mlflow.tracking import MlflowClient

        self._metric, self._param = Metric, Param
        uri = dest.mlflow_uri()
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=uri)
        name = os.environ.get("MLFLOW_EXPERIMENT_NAME", "ncalab")
        found = self.client.get_experiment_by_name(name)
        if found is not None:
            experiment = found.experiment_id
        else:
            artifacts = None
            if uri.startswith("sqlite:///"):  # beside the database, not in the working directory
                artifacts = (Path(uri.removeprefix("sqlite:///")).parent / "mlartifacts").as_uri()
            experiment = self.client.create_experiment(name, artifact_location=artifacts)
        tag = "ncalab.experiment_id"
        runs = self.client.search_runs([experiment], filter_string=f"tags.`{tag}` = '{dest.experiment_id}'",
                                       max_results=1)
        tags = {tag: dest.experiment_id, **({"ncalab.sweep_id": dest.sweep_id} if dest.sweep_id else {}),
                **{f"ncalab.{k}": str(v) for k, v in dest.tags.items()}}
        if runs:
            self.run_id = runs[0].info.run_id
            self.client.update_run(self.run_id, status="RUNNING")
        else:
            self.run_id = self.client.create_run(experiment, run_name=dest.name or dest.experiment_id,
                                                 tags=tags).info.run_id
        self.uri = uri

    def log_config(self, config: dict) -> None:
        params = [self._param(k, json.dumps(v)[:6000]) for k, v in flatten(config).items()]
        for i in range(0, len(params), 100):
            self.client.log_batch(self.run_id, params=params[i : i + 100])

    def restart(self, run: str, tokens: int) -> None:
        pass  # MLflow keeps every point; a resumed run logs the same values again at the same steps

    def _log(self, metrics: list) -> None:
        for i in range(0, len(metrics), self.BATCH):
            self.client.log_batch(self.run_id, metrics=metrics[i : i + self.BATCH])

    def log_points(self, run: str, values: list[Scalar]) -> None:
        self._log([self._metric(mlflow_key(run, s.name), s.value, int(s.time * 1000), s.x) for s in values])

    def log_summary(self, summary: dict) -> None:
        now = int(time.time() * 1000)
        self._log([self._metric(mlflow_key("summary", k), v, now, 0) for k, v in summary_values(summary).items()])

    def close(self, status: str) -> None:
        self.client.set_terminated(self.run_id, {"completed": "FINISHED", "cancelled": "KILLED"}.get(status, "FAILED"))


class WandbTracker:
    """One W&B run per experiment (its id is the experiment's, so a resumed experiment goes on
    in the same run); metrics `<run kind>/<metric>` against `<run kind>/tokens` (or `/step`)."""

    name = "wandb"

    def __init__(self, dest: Destination):
        wandb = _need("wandb", "wandb")
        mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
        folder = dest.wandb_dir()
        folder.mkdir(parents=True, exist_ok=True)
        settings = wandb.Settings(console="off", silent=True, save_code=False, disable_git=True,
                                  disable_job_creation=True)
        self.run = wandb.init(project=os.environ.get("WANDB_PROJECT", "ncalab"), id=dest.experiment_id,
                              name=dest.name or dest.experiment_id, group=dest.sweep_id, dir=str(folder), mode=mode,
                              resume="allow", tags=[f"{k}:{v}" for k, v in dest.tags.items()], settings=settings)
        self.defined: set[str] = set()

    def log_config(self, config: dict) -> None:
        self.run.config.update(config, allow_val_change=True)

    def restart(self, run: str, tokens: int) -> None:
        pass

    def log_points(self, run: str, values: list[Scalar]) -> None:
        rows: dict[tuple[str, int], dict] = {}
        for s in values:
            axis = f"{run}/{s.axis}"
            if axis not in self.defined:
                self.run.define_metric(axis)
                self.defined.add(axis)
            key = f"{run}/{s.name}"
            if key not in self.defined:
                self.run.define_metric(key, step_metric=axis)
                self.defined.add(key)
            rows.setdefault((axis, s.x), {axis: s.x})[key] = s.value
        for row in rows.values():
            self.run.log(row)

    def log_summary(self, summary: dict) -> None:
        self.run.summary.update({f"summary/{k}": v for k, v in summary_values(summary).items()})

    def close(self, status: str) -> None:
        self.run.finish(exit_code=0 if status == "completed" else 1)


TRACKER_TYPES: dict[str, Callable[[Destination], Tracker]] = {
    "tensorboard": TensorBoardTracker, "mlflow": MlflowTracker, "wandb": WandbTracker}


def destination(store: StoreReader, exp_id: str, track_dir: str | None = None) -> Destination:
    exp = store.get_experiment(exp_id)
    tags = {"preset": exp.preset, "scale": exp.scale, "seed": exp.seed}
    return Destination(exp_id, Path(store.home) / "experiments" / exp_id, Path(store.home),
                       Path(track_dir).expanduser().resolve() if track_dir else None, exp.name, exp.sweep_id, tags)


def _reason(e: BaseException) -> str:
    if isinstance(e, NcalabError):
        return str(e)
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0]}" if text else type(e).__name__


class Mirror:
    """Sends an experiment's metrics to its trackers from a background thread.

    Every method returns at once. Warnings (a tracker that failed and was switched off, points
    dropped because the queue was full) reach ``note`` from the caller's thread, one line each."""

    def __init__(self, names: list[str], dest: Destination | None, note: Callable[[str], None],
                 capacity: int = 256, close_timeout: float = 120.0,
                 make: dict[str, Callable[[Destination], Tracker]] | None = None):
        self.names, self.note, self.close_timeout = list(names), note, close_timeout
        self._make = make or TRACKER_TYPES
        self._queue: queue.Queue = queue.Queue(maxsize=capacity)
        self._warnings: queue.SimpleQueue = queue.SimpleQueue()
        self.dropped = 0  # metric points not mirrored because the queue was full
        self.failed: list[str] = []
        self.cpu_seconds = 0.0  # CPU time the worker spent in the trackers (what mirroring costs)
        self._closed = False
        self._thread = None
        if self.names:
            self._thread = threading.Thread(target=self._work, args=(dest,), name="ncalab-tracking", daemon=True)
            self._thread.start()

    # ---- the caller's side ---------------------------------------------------------------------
    def _put(self, op: str, *args, points: int = 0) -> None:
        self._flush_warnings()
        if self._thread is None or self._closed:
            return
        try:
            self._queue.put_nowait((op, args))
        except queue.Full:
            self.dropped += max(points, 1)

    def config(self, config: dict) -> None:
        self._put("log_config", config)

    def restart(self, run: str, tokens: int) -> None:
        self._put("restart", run, tokens)

    def points(self, run: str, points: list) -> None:
        if points:
            self._put("log_points", run, list(points), points=len(points))

    def summary(self, summary: dict) -> None:
        self._put("log_summary", summary)

    def close(self, status: str = "completed") -> None:
        """Flush and close every tracker (waits at most close_timeout seconds)."""
        if self._thread is not None and not self._closed:
            self._closed = True
            try:  # waits for room: the worker drains the queue first
                self._queue.put(("close", (status,)), timeout=self.close_timeout)
            except queue.Full:
                pass
            self._thread.join(self.close_timeout)
            if self._thread.is_alive():
                self._warn(f"tracking: the trackers did not finish within {self.close_timeout:.0f} s; "
                           "their last points may be missing")
        if self.dropped:
            self._warn(f"tracking: {self.dropped:,} metric points were not mirrored (the trackers fell behind); "
                       "the run store has them all")
            self.dropped = 0
        self._flush_warnings()

    def _warn(self, text: str) -> None:
        self._warnings.put(text)

    def _flush_warnings(self) -> None:
        while True:
            try:
                text = self._warnings.get_nowait()
            except queue.Empty:
                return
            self.note(f"warning: {text}")

    # ---- the worker thread ---------------------------------------------------------------------
    def _work(self, dest: Destination) -> None:
        live: list[Tracker] = []
        for name in self.names:
            try:
                live.append(self._make[name](dest))
            except BaseException as e:  # noqa: BLE001 - any failure of a tracker only switches it off
                self._fail(name, e, "cannot start")
        while True:
            op, args = self._queue.get()
            t0 = time.thread_time()
            if op == "log_points":
                try:
                    args = (args[0], scalars(args[1]))
                except (KeyError, TypeError, ValueError) as e:
                    self._warn(f"tracking: a batch of metric points could not be read ({_reason(e)}); skipped")
                    continue
            for t in list(live):
                try:
                    getattr(t, op)(*args)
                except BaseException as e:  # noqa: BLE001
                    live.remove(t)
                    self._fail(t.name, e, "failed")
                    if op != "close":
                        try:
                            t.close("failed")
                        except BaseException:  # noqa: BLE001, S110 - already reported
                            pass
            self.cpu_seconds += time.thread_time() - t0
            if op == "close":
                return

    def _fail(self, name: str, e: BaseException, what: str) -> None:
        self.failed.append(name)
        self._warn(f"{LABEL[name]} {what} ({_reason(e)}); not mirroring there, the run store keeps every point")


def start(cfg, store: Store, exp_id: str, note: Callable[[str], None]) -> Mirror:
    """The mirror of an experiment with this config (one that does nothing without runtime.track)."""
    names = list(dict.fromkeys(cfg.runtime.track))
    dest = destination(store, exp_id, cfg.runtime.track_dir) if names else None
    return Mirror(names, dest, note)


def export(store: StoreReader, exp_ids: list[str], fmt: str, out: Path | None = None) -> list[str]:
    """Write stored experiments to a tracker (tensorboard: under ``out``; mlflow: ``out``/mlflow.db
    or MLFLOW_TRACKING_URI); returns where. Errors are NcalabErrors (this is no background mirror)."""
    if fmt not in TRACKER_TYPES:
        raise NcalabError(f"unknown tracker {fmt!r}")
    where = []
    for exp_id in exp_ids:
        exp = store.get_experiment(exp_id)
        dest = destination(store, exp_id, str(out) if out is not None else None)
        try:
            tracker = TRACKER_TYPES[fmt](dest)
            tracker.log_config(stored_config(json.loads(exp.config_json)).to_dict())
            for run in store.runs_of(exp_id):
                points = store.metrics(run.id)
                if points:
                    tracker.restart(run.kind, -1)
                    tracker.log_points(run.kind, scalars(points, origin=run.started_at or run.created_at))
            if exp.summary_json:
                tracker.log_summary(json.loads(exp.summary_json))
            tracker.close(exp.status)
        except NcalabError:
            raise
        except Exception as e:  # noqa: BLE001 - the tracker's own errors, in one line
            raise NcalabError(f"cannot export {exp_id} to {LABEL[fmt]}: {_reason(e)}") from None
        where.append(str(dest.tensorboard("")) if fmt == "tensorboard" else
                     getattr(tracker, "uri", "") if fmt == "mlflow" else str(dest.wandb_dir()))
    return where
