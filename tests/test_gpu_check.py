"""benchmarks/gpu_check.py: the one prepared command a GPU loan runs. Its dry run takes every
part through the same code at toy sizes on the CPU, so the command cannot rot between loans;
the walk records a skipped part's reason and a failed part's one-line error and goes on."""

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"

# Figures each part must report, all numbers above zero, when it ran.
POSITIVE = {
    "train_eager": ("tokens_per_s", "mfu", "micro_batch", "peak_flops"),
    "train_compiled": ("tokens_per_s", "mfu", "micro_batch"),
    "nca_engine": ("gpu_tokens_per_s_web", "cpu_tokens_per_s_web", "gpu_tokens_per_s_code", "cpu_tokens_per_s_code"),
    "eval_sampling": ("tokens_per_s", "baseline_tokens_per_s", "humaneval_protocol_hours"),
    "e2e_small": ("wall_s", "ppl_nca", "ppl_scratch"),
    "scaling_study": ("wall_s", "points"),
    "distributed": ("processes", "one_process_tokens_per_s", "ddp_tokens_per_s", "fsdp_tokens_per_s",
                    "ddp_kept_per_gpu", "fsdp_kept_per_gpu"),
}


def _module():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("gpu_check", mod)  # its dataclasses look their module up there
    spec.loader.exec_module(sys.modules["gpu_check"])
    return sys.modules["gpu_check"]


@pytest.mark.slow
@pytest.mark.all_cores  # DDP and FSDP2 run as 2 processes, one core each
def test_the_dry_run_runs_every_part_and_reports_its_figures(tmp_path):
    out = tmp_path / "dry.json"
    # in this one process: each part's child would import torch and transformers again (~5 s each);
    # the children's way is the tests' below
    done = subprocess.run([sys.executable, str(SCRIPT), "--dry-run", "--in-process", "--out", str(out)], cwd=tmp_path,
                          capture_output=True, text=True, timeout=1200, check=False)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["dry_run"] is True and report["device"]["torch"] and report["device"]["device_name"]
    assert list(report["parts"]) == [p.name for p in _module().PARTS]
    for name, entry in report["parts"].items():
        if entry["status"] == "skipped":  # only for want of a second core (2 gloo processes)
            assert name == "distributed" and entry["reason"], entry
            continue
        assert entry["status"] == "ok", f"{name}: {entry}"
        figures = entry["figures"]
        for key in POSITIVE.get(name, ()):
            assert isinstance(figures[key], (int, float)) and figures[key] > 0, f"{name}.{key} = {figures.get(key)}"
    assert set(report["parts"]["e2e_small"]["figures"]["models_loaded"]) >= {"nca", "scratch"}
    # the reduced study's points: 2 sizes x 2 budgets x (scratch, nca), readable by `study fit --points`
    from ncalab.services.study import read_points

    pooled = read_points(out)["points"]
    assert len(pooled) == 8 and {p.arm for p in pooled} == {"scratch", "nca"} and all(p.loss > 0 for p in pooled)
    assert 0 <= report["parts"]["train_eager"]["figures"]["data_wait_fraction"] <= 1
    assert {t["figure"] for t in report["targets"]} == {"mfu", "data_wait_fraction"}
    assert out.with_suffix(".txt").read_text().startswith("GPU check (dry run")
    assert (tmp_path / "dry.logs" / "train_eager.log").is_file()


def test_a_part_that_does_not_fit_or_cannot_run_here_is_skipped_with_its_reason(tmp_path):
    gc = _module()
    part = gc.BY_NAME["train_compiled"]
    ctx = gc.Context(False, gc.FULL, seconds=60.0)
    entry = gc.attempt(part, ctx, gpus=1, logs=tmp_path)
    assert entry["status"] == "skipped" and "--parts train_compiled" in entry["reason"]
    assert gc.attempt(part, ctx, gpus=0, logs=tmp_path)["reason"].startswith("no CUDA GPU visible")
    assert "2 or more GPUs" in gc.attempt(gc.BY_NAME["distributed"], ctx, gpus=1, logs=tmp_path)["reason"]


def test_a_failing_part_records_one_line_and_the_walk_goes_on(tmp_path, monkeypatch):
    gc = _module()
    fine = gc.Part("environment", gc.environment, 1, 1, gc.needs_nothing)
    nowhere = gc.Part("no_such_part", gc.environment, 1, 1, gc.needs_nothing)  # the child finds no such part
    monkeypatch.setattr(gc, "visible_gpus", lambda: 0)
    report = gc.walk([nowhere, fine], True, 120.0, tmp_path / "r.json")
    failed = report["parts"]["no_such_part"]
    assert failed["status"] == "failed" and "KeyError" in failed["error"] and "\n" not in failed["error"]
    assert report["parts"]["environment"]["status"] == "ok"
    assert json.loads((tmp_path / "r.json").read_text())["parts"].keys() == report["parts"].keys()
