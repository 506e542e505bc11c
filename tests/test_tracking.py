"""Mirroring metrics to TensorBoard, MLflow and W&B (`--track`, `runs export`), read back with
each tracker's own reader and compared with the run store; a failing or slow tracker never
stops or slows training."""

import contextlib
import io
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from ncalab.cli.main import main
from ncalab.config.keys import flatten
from ncalab.experiment.tracking import Destination, Mirror, TensorBoardTracker, mlflow_key
from ncalab.store import RunStore

from conftest import MICRO, wait_until  # noqa: E402

pytest.importorskip("tensorboard")
pytest.importorskip("mlflow")
pytest.importorskip("wandb")

ARGS = [*MICRO, "--set", "stage2.tokens=16384"]
KINDS = ("stage1", "nca", "scratch")


@contextlib.contextmanager
def environment(**values):
    """Set (or, with None, remove) environment variables for a block."""
    old = {k: os.environ.get(k) for k in values}
    for k, v in values.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def offline(tmp: Path):
    """W&B offline with its settings and cache under tmp; MLflow at its ncalab default."""
    return environment(WANDB_MODE=None, WANDB_API_KEY=None, MLFLOW_TRACKING_URI=None, MLFLOW_EXPERIMENT_NAME=None,
                       WANDB_CONFIG_DIR=str(tmp / "wandb-config"), WANDB_CACHE_DIR=str(tmp / "wandb-cache"),
                       WANDB_DATA_DIR=str(tmp / "wandb-data"))


@pytest.fixture(scope="module")
def tracked(tmp_path_factory, code_corpus):
    """A micro experiment mirrored live to all three trackers."""
    tmp = tmp_path_factory.mktemp("tracked")
    home = tmp / "home"
    out, err = io.StringIO(), io.StringIO()
    with offline(tmp), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["run", "--corpus", str(code_corpus), "--home", str(home), *ARGS,
                     "--track", "tensorboard,mlflow", "--track", "wandb", "--json"])
    assert code == 0, err.getvalue()
    lines = out.getvalue().strip().splitlines()
    assert len(lines) == 1, out.getvalue()  # nothing of the trackers on stdout
    assert "warning" not in err.getvalue(), err.getvalue()
    return home, json.loads(lines[0])


def stored_series(store, run) -> dict[str, list[tuple[int, float]]]:
    """{name: [(x, value)]} as a tracker must show it: x is tokens, or the step for a series
    with several points at one token count (in-context accuracy by frame)."""
    out: dict[str, list] = {}
    points = store.metrics(run.id)
    for name in sorted({p.name for p in points}):
        pts = [p for p in points if p.name == name]
        indexed = len({p.tokens for p in pts}) < len(pts)
        out[name] = sorted((p.step if indexed else p.tokens, math.nan if p.value is None else p.value) for p in pts)
    return out


def same(a: list[tuple[int, float]], b: list[tuple[int, float]], float32: bool = False) -> bool:
    if len(a) != len(b):
        return False
    for (xa, va), (xb, vb) in zip(sorted(a), sorted(b)):
        if float32:
            va, vb = float(np.float32(va)), float(np.float32(vb))
        if xa != xb or not (va == vb or (math.isnan(va) and math.isnan(vb))):
            return False
    return True


def check_tensorboard(store, exp_id: str, folder: Path) -> None:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    for run in store.runs_of(exp_id):
        acc = EventAccumulator(str(folder / run.kind), size_guidance={"scalars": 0})
        acc.Reload()
        want = stored_series(store, run)
        assert set(acc.Tags()["scalars"]) == set(want)
        for name, series in want.items():
            got = [(e.step, e.value) for e in acc.Scalars(name)]
            assert same(got, series, float32=True), (run.kind, name)  # TensorBoard keeps float32
        # the x axis is tokens seen, not the step
        assert [e.step for e in acc.Scalars("train_loss")] == [p.tokens for p in store.metrics(run.id, "train_loss")]
    summary = json.loads(store.get_experiment(exp_id).summary_json)
    acc = EventAccumulator(str(folder / "experiment"), size_guidance={"scalars": 0, "tensors": 0})
    acc.Reload()
    assert acc.Scalars("summary/gain")[0].value == pytest.approx(summary["gain"], rel=1e-6)
    assert {"config/text_summary", "summary/text_summary"} <= set(acc.Tags()["tensors"])


def check_mlflow(store, exp_id: str, uri: str) -> None:
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("ncalab")
    (found,) = client.search_runs([experiment.experiment_id], filter_string=f"tags.`ncalab.experiment_id` = '{exp_id}'")
    assert found.info.status == "FINISHED"
    for run in store.runs_of(exp_id):
        for name, series in stored_series(store, run).items():
            history = client.get_metric_history(found.info.run_id, mlflow_key(run.kind, name))
            assert same([(m.step, m.value) for m in history], series), (run.kind, name)
    config = flatten(json.loads(store.get_experiment(exp_id).config_json))
    assert found.data.params["stage2.lr"] == json.dumps(config["stage2.lr"])
    assert found.data.params["runtime.track"] == json.dumps(config["runtime.track"])
    assert found.data.metrics["summary/ppl_nca"] == json.loads(store.get_experiment(exp_id).summary_json)["ppl_nca"]


def wandb_records(folder: Path) -> list[dict]:
    """The records of an offline W&B run, through the W&B CLI's own reader of .wandb files."""
    wandb = Path(sys.executable).parent / "wandb"
    (run_dir,) = (folder / "wandb").glob("offline-run-*")
    out = subprocess.run([str(wandb), "leet", "inspect", "--json", str(run_dir)], capture_output=True, text=True,
                         timeout=120, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


# slow (end to end); the fast suite keeps the exports of past experiments to every tracker
@pytest.mark.slow
def test_live_mirror_matches_the_store_in_every_tracker(tracked):
    home, s = tracked
    store, exp_id = RunStore(home), s["experiment_id"]
    check_tensorboard(store, exp_id, home / "experiments" / exp_id / "tensorboard")
    check_mlflow(store, exp_id, f"sqlite:///{home / 'mlflow.db'}")

    records = wandb_records(home / "experiments" / exp_id)
    rows = [r["history"]["item"] for r in records if r["type"] == "history"]
    for run in store.runs_of(exp_id):
        for name, series in stored_series(store, run).items():
            key = f"{run.kind}/{name}"
            got = [(int(row.get(f"{run.kind}/tokens", row.get(f"{run.kind}/step"))), row[key]) for row in rows if key in row]
            assert same(got, series), key
    config = next(r["config"]["update"] for r in records if r["type"] == "config")
    assert config["stage2"]["tokens"] == 16384 and config["runtime"]["track"] == ["tensorboard", "mlflow", "wandb"]
    summary = {}
    for r in records:
        if r["type"] == "summary":
            summary.update(r["summary"]["update"])
    assert summary["summary/gain"] == s["gain"]
    assert next(r for r in records if r["type"] == "exit")["exit"].get("exit_code", 0) == 0


def test_runs_export_writes_past_experiments(micro_home, tmp_path, capsys):
    home = micro_home  # an experiment that ran with no tracker at all
    store = RunStore(home)
    exp_id = store.list_experiments()[0].id
    s = {"runs": {r.kind: r.id for r in store.runs_of(exp_id)}}
    assert main(["runs", "export", exp_id, "--format", "tensorboard", "--out", str(tmp_path / "tb"), "--home", str(home)]) == 0
    check_tensorboard(store, exp_id, tmp_path / "tb" / exp_id)
    with offline(tmp_path):
        assert main(["runs", "export", s["runs"]["nca"], "--format", "mlflow", "--out", str(tmp_path / "ml"),
                     "--home", str(home)]) == 0
    check_mlflow(store, exp_id, f"sqlite:///{tmp_path / 'ml' / 'mlflow.db'}")
    capsys.readouterr()
    (tmp_path / "file").write_text("")
    assert main(["runs", "export", exp_id, "--format", "tensorboard", "--out", str(tmp_path / "file"), "--home", str(home)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "is a file" in err


@pytest.mark.slow
def test_failing_trackers_warn_once_and_the_run_is_the_same(tracked, code_corpus, tmp_path, capsys):
    """TensorBoard pointed below a regular file, MLflow at a store URI it cannot use: one warning
    line each, the experiment completes with the tracked run's results, every point stored."""
    home, s = tracked
    (tmp_path / "plain-file").write_text("")
    with environment(MLFLOW_TRACKING_URI="nosuchscheme://nowhere"):
        code = main(["run", "--corpus", str(code_corpus), "--home", str(tmp_path / "h"), *ARGS,
                     "--set", f"runtime.track_dir={tmp_path / 'plain-file' / 'tb'}", "--track", "tensorboard,mlflow"])
    out, err = capsys.readouterr()
    assert code == 0, err
    warnings = [line for line in err.splitlines() if "warning" in line]
    assert len(warnings) == 2, err
    assert any("TensorBoard cannot start" in w for w in warnings) and any("MLflow cannot start" in w for w in warnings)
    store = RunStore(tmp_path / "h")
    (exp,) = store.list_experiments()
    again = json.loads(exp.summary_json)
    assert (again["ppl_nca"], again["ppl_scratch"]) == (s["ppl_nca"], s["ppl_scratch"])
    first = RunStore(home)
    for kind in KINDS:
        a, b = first.get_run(s["runs"][kind]), store.get_run(again["runs"][kind])
        assert {n: len(v) for n, v in stored_series(first, a).items()} == {n: len(v) for n, v in stored_series(store, b).items()}


class Blocking:
    """A tracker that holds every batch until released (a tracker that fell behind)."""

    name = "tensorboard"

    def __init__(self, dest):
        self.release, self.batches = threading.Event(), 0

    def log_config(self, config):
        pass

    def restart(self, run, tokens):
        pass

    def log_points(self, run, values):
        self.release.wait(30)
        self.batches += 1

    def log_summary(self, summary):
        pass

    def close(self, status):
        pass


def test_a_slow_tracker_never_blocks_and_dropped_points_are_counted(tmp_path):
    made, notes = [], []

    def make(dest):
        made.append(Blocking(dest))
        return made[-1]

    mirror = Mirror(["tensorboard"], Destination("e-x", tmp_path, tmp_path), notes.append, capacity=4,
                    make={"tensorboard": make})
    batch = [{"name": "train_loss", "step": i, "tokens": 100 * i, "wall_time": 0.1 * i, "value": 1.0} for i in range(300)]
    slowest = 0.0
    for _ in range(20):
        t0 = time.perf_counter()
        mirror.points("nca", batch)
        slowest = max(slowest, time.perf_counter() - t0)
    assert slowest < 0.05  # the training thread only enqueues
    wait_until(lambda: made, "the tracker made in its thread", timeout=30, poll=0.01)
    made[0].release.set()
    mirror.close()
    kept = made[0].batches
    assert 4 <= kept < 20
    assert notes == [f"warning: tracking: {(20 - kept) * 300:,} metric points were not mirrored (the trackers fell "
                     "behind); the run store has them all"]


def test_a_tracker_that_raises_is_switched_off_with_one_warning_and_the_others_go_on(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    class Broken(Blocking):
        name = "mlflow"

        def log_points(self, run, values):
            raise OSError(28, "No space left on device")

    notes = []
    dest = Destination("e-x", tmp_path / "exp", tmp_path)
    mirror = Mirror(["tensorboard", "mlflow"], dest, notes.append,
                    make={"tensorboard": TensorBoardTracker, "mlflow": Broken})
    for i in range(5):
        mirror.points("nca", [{"name": "val_ppl", "step": i, "tokens": 10 * i, "wall_time": float(i), "value": 100.0 - i}])
    mirror.close()
    assert notes == ["warning: MLflow failed (OSError: [Errno 28] No space left on device); not mirroring there, "
                     "the run store keeps every point"]
    acc = EventAccumulator(str(tmp_path / "exp" / "tensorboard" / "nca"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("val_ppl")] == [(10 * i, 100.0 - i) for i in range(5)]


def test_tensorboard_hides_points_after_the_checkpoint_of_a_resumed_run(tmp_path):
    """A resumed stage logs again from its checkpoint; as in the store, the earlier points past
    it are gone (TensorBoard's purge), so the curve has no duplicates and no gaps."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    def pts(lo, hi, value):
        return [{"name": "train_loss", "step": i, "tokens": 100 * i, "wall_time": float(i), "value": value} for i in range(lo, hi)]

    dest = Destination("e-x", tmp_path / "exp", tmp_path)
    for attempt, (lo, hi, value, restart) in enumerate(((1, 9, 1.0, -1), (6, 12, 2.0, 500))):
        notes = []
        mirror = Mirror(["tensorboard"], dest, notes.append)
        mirror.restart("stage1", restart)  # the pipeline's call when a stage starts or resumes
        mirror.points("stage1", pts(lo, hi, value))
        mirror.close()
        assert notes == []
        time.sleep(1.1)  # a new event file per attempt (their names carry the second)
    acc = EventAccumulator(str(tmp_path / "exp" / "tensorboard" / "stage1"))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("train_loss")] == \
        [(100 * i, 1.0) for i in range(1, 6)] + [(100 * i, 2.0) for i in range(6, 12)]


def test_unknown_tracker_is_a_one_line_error(tmp_path, capsys):
    assert main(["run", "--home", str(tmp_path), "--track", "neptune", "--print-config"]) == 1
    err = capsys.readouterr().err.strip()
    assert err == "error: unknown tracker 'neptune'; --track takes tensorboard, mlflow, wandb"
