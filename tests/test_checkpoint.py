"""Checkpoints: exact round trips without pickle, crash safety at every step of a save,
earlier versions' checkpoints, and a planted pickle that must never run."""

import json
import os
import random
import re
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import tiny_nca_trainer
import ncalab
from ncalab.cli.main import main
from ncalab.config import ExperimentConfig, ModelConfig
from ncalab.errors import NcalabError
from ncalab.nca.config import NCAConfig
from ncalab.store import RunStore
from ncalab.train import checkpoint
from ncalab.train.model import build_model

M = ModelConfig(n_layer=1, d_model=32, n_head=2)
NCA = NCAConfig(seq_len=128)




def _same(a, b) -> bool:
    """Exactly equal nested values: tensors bit for bit, arrays element for element, types kept."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray):
        return isinstance(b, np.ndarray) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    if isinstance(a, float) and a != a:
        return isinstance(b, float) and b != b
    return type(a) is type(b) and a == b


def _write_legacy(folder: Path, state: dict) -> None:
    """The layout earlier versions wrote: the same state dict, pickled by torch.save."""
    torch.save(state, folder / checkpoint.LEGACY_STATE_FILE)
    (folder / checkpoint.STATE_FILE).unlink()
    (folder / checkpoint.TENSORS_FILE).unlink()


def test_the_trainer_state_round_trips_exactly(tmp_path):
    tr, _ = tiny_nca_trainer(tmp_path / "ck", should_stop=lambda: tr.step >= 3)
    tr.run()
    torch.manual_seed(7), np.random.seed(7), random.seed(7)
    extra = {"data": {"next_batch_index": np.int64(5), "offset": 3}, "odd": {1: (2.5, float("inf")), "$x": [None, True]},
             "nan": float("nan"), "big": 2**70, "bf16": torch.randn(3, dtype=torch.bfloat16), "text": "é\u0000"}
    expected = {"optimizer": tr.optimizer.state_dict(), "scheduler": tr.scheduler.state_dict(),
                "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate(),
                        "cuda": None}, **extra, "data": {"next_batch_index": 5, "offset": 3}}  # numpy scalars: numbers
    checkpoint.save(tmp_path / "x", tr.model, tr.optimizer, tr.scheduler, **extra)
    state = checkpoint.load_state(tmp_path / "x")
    assert state["optimizer"]["state"] and _same(state, expected)
    assert sorted(p.name for p in (tmp_path / "x").iterdir()) == sorted(
        ["config.json", "generation_config.json", "model.safetensors", checkpoint.STATE_FILE, checkpoint.TENSORS_FILE])
    draws = (torch.rand(3), np.random.rand(3), random.random())
    checkpoint.restore_rng(state)
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(draws[0], again[0]) and np.array_equal(draws[1], again[1]) and draws[2] == again[2]


# One interpreter imports torch once, then forks a child per step; each child saves checkpoint
# A (step 1), then B (step 2, other weights) with the kill hook set to that step.
_CRASHER = r"""
import json, os, signal, sys
import torch
from ncalab.config import ModelConfig
from ncalab.train import checkpoint
from ncalab.train.model import build_model

root = sys.argv[1]
outcome = {}
for point in checkpoint.SAVE_STEPS:
    pid = os.fork()
    if pid == 0:
        try:
            model = build_model(ModelConfig(n_layer=1, d_model=32, n_head=2), 60, 32, seed=0)
            opt = torch.optim.AdamW(model.parameters())
            path = os.path.join(root, point, "last")
            checkpoint.save(path, model, opt, step=1)
            with torch.no_grad():
                for p in model.parameters():
                    p.add_(1.0)
            os.environ[checkpoint.KILL_AT] = point
            checkpoint.save(path, model, opt, step=2)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    outcome[point] = os.WTERMSIG(status) if os.WIFSIGNALED(status) else -os.WEXITSTATUS(status)
print(json.dumps(outcome))
"""


def test_a_kill_at_any_step_of_a_save_leaves_the_newest_complete_checkpoint(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run([sys.executable, "-c", _CRASHER, str(tmp_path)], capture_output=True, text=True, env=env,
                         timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    outcome = json.loads(res.stdout.strip().splitlines()[-1])
    assert outcome == {p: signal.SIGKILL for p in checkpoint.SAVE_STEPS}  # every child died at its step
    a = build_model(M, 60, 32, seed=0).state_dict()
    done = checkpoint.SAVE_STEPS.index("complete")
    for i, point in enumerate(checkpoint.SAVE_STEPS):
        path = tmp_path / point / "last"
        copies = [p.name for p in path.parent.iterdir()]
        assert len(copies) <= 2, (point, copies)  # disk use stays bounded
        found = checkpoint.find(path)
        b_done = i >= done
        assert found is not None, point
        assert checkpoint.load_state(found)["step"] == (2 if b_done else 1), point
        weights = AutoModelForCausalLM.from_pretrained(found).state_dict()
        assert all(torch.equal(weights[k], a[k] + (1.0 if b_done else 0.0)) for k in a), point
        # the next save puts things back in place: one folder, the new checkpoint, numbered after it
        model = build_model(M, 60, 32, seed=0)
        checkpoint.save(path, model, step=3)
        assert [p.name for p in path.parent.iterdir()] == ["last"] and checkpoint.find(path) == path
        assert checkpoint.load_state(path)["step"] == 3
        assert json.loads((path / checkpoint.STATE_FILE).read_text())["seq"] == (3 if b_done else 2)


def test_a_damaged_checkpoint_is_an_error_naming_it_not_a_silent_restart(tmp_path):
    model = build_model(M, 60, 32, seed=0)
    checkpoint.save(tmp_path / "last", model, step=1)
    weights = tmp_path / "last" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(NcalabError, match=r"checkpoint .*last is damaged \(model.safetensors"):
        checkpoint.find(tmp_path / "last")
    (tmp_path / "last" / checkpoint.STATE_FILE).write_text("{not json")
    with pytest.raises(NcalabError, match="is damaged"):
        checkpoint.load_state(tmp_path / "last")


def test_an_earlier_versions_checkpoint_resumes_exactly(tmp_path):
    full, full_points = tiny_nca_trainer(tmp_path / "a")
    full.run()
    stopped, _ = tiny_nca_trainer(tmp_path / "b", should_stop=lambda: stopped.step >= 3)
    stopped.run()
    last = tmp_path / "b" / "last"
    _write_legacy(last, checkpoint.load_state(last))
    assert checkpoint.is_legacy(last) and checkpoint.find(last) == last
    resumed, resumed_points = tiny_nca_trainer(tmp_path / "b")
    resumed.restore(last)
    assert resumed.step == 3
    resumed.run()
    assert all(torch.equal(a, b) for a, b in zip(full.model.state_dict().values(), resumed.model.state_dict().values()))
    full_loss = {p["step"]: p["value"] for p in full_points if p["name"] == "train_loss"}
    assert all(full_loss[p["step"]] == p["value"] for p in resumed_points if p["name"] == "train_loss")
    # its next checkpoint replaced it in the new format
    assert not checkpoint.is_legacy(last) and not (last / checkpoint.LEGACY_STATE_FILE).exists()


def test_an_earlier_versions_interrupted_save_is_recognised(tmp_path):
    """Earlier versions crashed between their two renames left only last.old and last.tmp."""
    for steps in (2, 3):
        tr, _ = tiny_nca_trainer(tmp_path / f"s{steps}", should_stop=lambda: tr.step >= steps)
        tr.run()
        _write_legacy(tmp_path / f"s{steps}" / "last", checkpoint.load_state(tmp_path / f"s{steps}" / "last"))
    ck = tmp_path / "ck"
    ck.mkdir()
    os.replace(tmp_path / "s2" / "last", ck / "last.old")
    os.replace(tmp_path / "s3" / "last", ck / "last.tmp")
    assert checkpoint.find(ck / "last") == ck / "last.tmp"
    resumed, _ = tiny_nca_trainer(ck)
    resumed.restore(ck / "last")
    assert resumed.step == 3


class _Payload:
    """Unpickling it runs code: it writes the marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def _planted_store(tmp_path, marker: Path):
    """A cancelled experiment whose stage-1 checkpoint is complete in the old layout, except
    that its trainer_state.pt is a pickle that runs code."""
    home = tmp_path / "h"
    store = RunStore(home)
    exp = store.create_experiment("code", "tiny", 0, ExperimentConfig().to_dict())
    run = store.create_run(exp.id, "stage1", ExperimentConfig().to_dict(), 1000)
    store.finish_experiment(exp.id, "cancelled")
    last = store.run_dir(run) / "checkpoints" / "last"
    build_model(M, NCA.vocab_size, NCA.seq_len, seed=0).save_pretrained(last)
    torch.save({"optimizer": _Payload(marker), "step": 1}, last / checkpoint.LEGACY_STATE_FILE)
    return home, store, exp, last


def test_a_planted_pickle_is_refused_and_never_runs(tmp_path, capsys):
    marker = tmp_path / "marker"
    home, store, exp, last = _planted_store(tmp_path, marker)
    # `ncalab runs resume` refuses before anything is queued
    assert main(["runs", "resume", exp.id, "--home", str(home)]) == 1
    out, err = capsys.readouterr()
    assert err.startswith("error: refused ") and len(err.strip().splitlines()) == 1 and "builtins.exec" in err
    assert str(last.parent) in err and not marker.exists()
    assert store.get_experiment(exp.id).status == "cancelled"
    # the job's own path (a resume that got past the CLI) refuses too
    with pytest.raises(NcalabError, match="would run code"):
        checkpoint.load_state(last)
    tr, _ = tiny_nca_trainer(tmp_path / "t")
    with pytest.raises(NcalabError, match="would run code"):
        tr.restore(last)
    assert not marker.exists()
    # the payload is live: loading it the way earlier versions did runs it
    torch.load(last / checkpoint.LEGACY_STATE_FILE, weights_only=False)
    assert marker.read_text() == "ran"


def test_the_package_never_loads_a_pickle():
    root = Path(ncalab.__file__).parent
    banned = re.compile(r"weights_only\s*=\s*False|allow_pickle\s*=\s*True|\bpickle\.loads?\(|\bimport pickle|"
                        r"\bdill\b|joblib\.load|torch\.load\((?![^)]*weights_only=True)")
    found = [f"{p.relative_to(root)}:{i}" for p in root.rglob("*.py")
             for i, line in enumerate(p.read_text().splitlines(), 1) if banned.search(line)]
    assert not found, found
    np_loads = [(p, line) for p in root.rglob("*.py") for line in p.read_text().splitlines() if "np.load(" in line]
    assert np_loads and all("allow_pickle=False" in line for _, line in np_loads), np_loads
