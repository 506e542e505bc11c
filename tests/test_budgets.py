"""Shorter stage-2 budgets as cooldown branches of one wsd run (experiment/budgets.py)."""

import os
import socket

import pytest

from ncalab.errors import NcalabError
from ncalab.experiment import pipeline
from ncalab.experiment.budgets import LOSS
from ncalab.services.config import resolve_config
from ncalab.services.experiments import submit
from ncalab.store import RunStore

# MICRO's model and data (tests/conftest.py); stage 2: 64 steps of 512 tokens, warm-up 2 steps
BUDGETS = ["stage2.schedule=wsd", "stage2.warmup=2", "stage2.budgets=8192,16384", "stage2.tokens=32768"]
SETS = ["model.n_layer=1", "model.d_model=32", "model.n_head=2", "nca.seq_len=128", "stage1.tokens=8192",
        "stage1.batch_size=8", "stage1.val_sequences=8", "stage2.seq_len=64", "stage2.batch_size=8",
        "stage2.eval_tokens=4096", "data.vocab_size=512", "data.val_fraction=0.2", "stage1.icl_sequences=0",
        "runtime.device=cpu", "runtime.dtype=fp32", *BUDGETS]


def _config(corpus, *more):
    return resolve_config("code", "tiny", sets=[*SETS, *more], corpus=str(corpus))


def _run(store, cfg, should_stop=None):
    exp = submit(cfg, store)
    assert store.claim_experiment(exp.id, os.getpid(), socket.gethostname())
    return exp.id, pipeline.run(cfg, store, exp.id, should_stop=should_stop)


def _budget_losses(store, exp_id):
    runs = {r.kind: r for r in store.runs_of(exp_id)}
    return {kind: dict(zip(*store.curve(runs[kind].id, LOSS))) for kind in ("nca", "scratch")}


def test_each_budget_is_stored_once_and_an_interrupted_branch_resumes_to_the_same_result(tmp_path, code_corpus):
    store = RunStore(tmp_path / "a")
    exp_id, summary = _run(store, _config(code_corpus))
    whole = _budget_losses(store, exp_id)
    runs = {r.kind: r for r in store.runs_of(exp_id)}
    for kind in ("nca", "scratch"):
        assert sorted(whole[kind]) == [8192, 16384, 32768]
        # the longest budget is the run's own last evaluation; shorter ones are their own runs' ends
        assert whole[kind][32768] == store.latest_metrics(runs[kind].id)["val_loss"]
        # the held-out curve of the run is the longest run's alone (no branch's points in it)
        tokens, _ = store.curve(runs[kind].id, "val_loss")
        assert tokens == sorted(set(tokens)) and tokens[-1] == 32768
        # the branch checkpoints of its own are gone once its result is stored
        assert not list((store.run_dir(runs[kind]) / "checkpoints").glob("budget-*"))
        assert runs[kind].tokens == 32768  # the run's progress is the longest run's, not a branch's
    assert whole["nca"][8192] != whole["scratch"][8192]
    assert summary is not None

    # stopped inside the scratch run's 16,384-token branch (its 8,192 result is stored), then resumed
    other = RunStore(tmp_path / "b")

    def inside_a_branch():
        scratch = next((r for r in other.runs_of(stopped_id[0]) if r.kind == "scratch"), None)
        if scratch is None:
            return False
        return 8192 in dict(zip(*other.curve(scratch.id, LOSS))) and other.get_run(scratch.id).status == "running"

    cfg = _config(code_corpus)
    exp = submit(cfg, other)
    stopped_id = [exp.id]
    assert other.claim_experiment(exp.id, os.getpid(), socket.gethostname())
    assert pipeline.run(cfg, other, exp.id, should_stop=inside_a_branch) is None
    scratch = {r.kind: r for r in other.runs_of(exp.id)}["scratch"]
    assert other.get_run(scratch.id).status == "cancelled"
    assert sorted(dict(zip(*other.curve(scratch.id, LOSS)))) == [8192]
    assert list((other.run_dir(scratch) / "checkpoints").glob("budget-16384*"))  # the branch checkpointed
    other.requeue_experiment(exp.id)
    assert other.claim_experiment(exp.id, os.getpid(), socket.gethostname())
    assert pipeline.run(cfg, other, exp.id) is not None
    again = _budget_losses(other, exp.id)
    assert again == whole  # bit for bit on the CPU, every budget once
    for kind, run in {r.kind: r for r in other.runs_of(exp.id)}.items():
        if kind in ("nca", "scratch"):
            assert len(other.metrics(run.id, LOSS)) == 3
            assert len(other.metrics(run.id, "params")) == 1  # the run's end points once, not per attempt


@pytest.mark.parametrize("sets, message", [
    (["stage2.schedule=cosine"], "set stage2.schedule=wsd"),
    (["stage2.warmup=0.05"], "stage2.warmup in steps"),
    (["stage2.budgets=8192,32768"], "shorter budgets than stage2.tokens"),
    (["stage2.budgets=-512"], "each > 0"),
    (["stage2.budgets=700.5"], "must be an int"),
    (["stage2.budgets=512"], "too few for a stable phase"),
    (["transfer.freeze=0.1"], "transfer.freeze"),
])
def test_budgets_that_cannot_be_branches_are_refused_in_one_line(code_corpus, sets, message):
    with pytest.raises(NcalabError, match=message) as e:
        _config(code_corpus, *sets)
    assert "\n" not in str(e.value)
