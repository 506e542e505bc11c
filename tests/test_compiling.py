"""runtime.compile=auto: compiled where it was measured to pay, never at the cost of a run, and
invisible to the reuse keys of runs stored when the setting was false."""

from __future__ import annotations

import pytest
import torch

from ncalab.config import ExperimentConfig
from ncalab.config.keys import apply_overrides, parse_set
from ncalab.config.stored import stored_config
from ncalab.errors import NcalabError
from ncalab.experiment.reuse import run_keys
from ncalab.train import compiling
from ncalab.train.compiling import AUTO_MIN_TOKENS, auto_reason, compiles
from ncalab.train.device import Placement
from tests.conftest import tiny_nca_trainer

CPU_BF16 = Placement(torch.device("cpu"), torch.bfloat16)
CPU_FP32 = Placement(torch.device("cpu"), None)


@pytest.fixture
def bf16_machine(monkeypatch):
    """A CPU with bf16 instructions and a C++ compiler, whatever this machine has."""
    monkeypatch.setattr(compiling, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(compiling, "cxx_compiler", lambda: "g++")


def test_auto_compiles_one_bf16_cpu_process_in_a_long_stage_only(bf16_machine, monkeypatch):
    assert compiles("auto", CPU_BF16, 1, AUTO_MIN_TOKENS)
    assert not compiles("auto", CPU_BF16, 1, AUTO_MIN_TOKENS - 1)
    assert "tokens" in auto_reason(CPU_BF16, 1, AUTO_MIN_TOKENS - 1)
    assert "several processes" in auto_reason(CPU_BF16, 2, AUTO_MIN_TOKENS)
    assert "bf16" in auto_reason(CPU_FP32, 1, AUTO_MIN_TOKENS)
    assert "GPU" in auto_reason(Placement(torch.device("cuda"), torch.bfloat16), 1, AUTO_MIN_TOKENS)
    monkeypatch.setattr(compiling, "cxx_compiler", lambda: None)
    assert "C++ compiler" in auto_reason(CPU_BF16, 1, AUTO_MIN_TOKENS)
    monkeypatch.setattr(compiling, "cpu_has_native_bf16", lambda: False)  # bf16 asked for on a CPU without it
    assert "bf16 instructions" in auto_reason(CPU_BF16, 1, AUTO_MIN_TOKENS)
    # an explicit setting is taken as it is, wherever the stage runs
    assert compiles(True, CPU_FP32, 4, 10) and not compiles(False, CPU_BF16, 1, 10**9)


def test_the_compiler_is_looked_up_on_the_path(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.delenv("CXX", raising=False)
    assert compiling.cxx_compiler() is None
    (tmp_path / "clang++").write_text("#!/bin/sh\n")
    (tmp_path / "clang++").chmod(0o755)
    assert compiling.cxx_compiler() == "clang++"


def test_compile_takes_true_false_and_auto_and_nothing_else():
    cfg = ExperimentConfig()
    assert cfg.runtime.compile == "auto"
    assert parse_set(["runtime.compile=on"], cfg) == {"runtime": {"compile": True}}
    assert parse_set(["runtime.compile=false"], cfg) == {"runtime": {"compile": False}}
    assert parse_set(["runtime.compile=auto"], cfg) == {"runtime": {"compile": "auto"}}
    with pytest.raises(NcalabError, match="expected true, false or auto, got 'maybe'"):
        parse_set(["runtime.compile=maybe"], cfg)
    bad = apply_overrides(ExperimentConfig(), {"runtime": {"compile": "sometimes"}})  # as from a config file
    with pytest.raises(NcalabError, match="runtime.compile must be true, false or auto"):
        bad.validate()
    # experiments stored when the setting was a plain bool keep what they ran with
    assert stored_config({**ExperimentConfig().to_dict(), "runtime": {"compile": False}}).runtime.compile is False


def _keys(compile_setting, placement):
    cfg = apply_overrides(ExperimentConfig(), {"runtime": {"compile": compile_setting},
                                               "stage1": {"tokens": AUTO_MIN_TOKENS // 2},
                                               "stage2": {"tokens": AUTO_MIN_TOKENS * 2}})
    return run_keys(cfg, placement)


def test_auto_left_uncompiled_keeps_the_keys_of_runs_stored_uncompiled(bf16_machine):
    assert _keys("auto", CPU_FP32) == _keys(False, CPU_FP32)  # fp32: auto compiles nothing
    auto, off, on = (_keys(s, CPU_BF16) for s in ("auto", False, True))
    assert auto["stage1"] == off["stage1"]  # half a million tokens: not compiled
    assert auto["scratch"] == on["scratch"] != off["scratch"]  # two million: compiled
    # the transferred run's key knows its stage 1 was not compiled when its stage 2 was
    assert len({auto["nca"], on["nca"], off["nca"]}) == 3


def _broken_compiler(monkeypatch):
    from ncalab.train import headloss

    monkeypatch.setattr(headloss, "_compiled_chunk", [])  # the process's cache stays as it was
    def compile_(fn, *a, **k):
        def fails(*args, **kwargs):
            raise RuntimeError("inductor: no working C++ compiler\nmore text")
        return fails
    monkeypatch.setattr(torch, "compile", compile_)


def test_a_compiler_that_fails_under_auto_costs_nothing_but_the_compiling(monkeypatch):
    from ncalab.train.loop import TrainerOptions

    eager, _ = tiny_nca_trainer(None, steps=3)
    eager.run()
    _broken_compiler(monkeypatch)
    told: list[str] = []
    base, points = tiny_nca_trainer(None, steps=3)
    tr = type(base)(base.model, base.spec, base.placement, base.batches, [],
                    TrainerOptions(on_metrics=points.extend, compile=True, compile_fallback=told.append))
    tr.run()
    assert told == ["RuntimeError: inductor: no working C++ compiler"]
    assert tr.body is None and tr.forward_model is tr.model  # the rest of the stage ran uncompiled
    for a, b in zip(eager.model.state_dict().values(), tr.model.state_dict().values()):
        assert torch.equal(a, b)  # the failed attempt left no gradient behind


def test_a_compiler_that_fails_when_asked_for_ends_the_stage(monkeypatch):
    from ncalab.train.loop import TrainerOptions

    _broken_compiler(monkeypatch)
    base, points = tiny_nca_trainer(None, steps=2)
    tr = type(base)(base.model, base.spec, base.placement, base.batches, [],
                    TrainerOptions(on_metrics=points.extend, compile=True))
    with pytest.raises(RuntimeError, match="no working C"):
        tr.run()
