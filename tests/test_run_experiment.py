"""`ncalab run` and `ncalab eval` end to end, at a micro scale, on real code text."""

import json
import pytest
import torch
from transformers import AutoModelForCausalLM

from ncalab.cli.main import main
from ncalab.store import RunStore

from conftest import MICRO, cli_json  # noqa: E402

def test_run_stores_everything_and_eval_reads_it(tmp_path, capsys, code_corpus):
    home = tmp_path / "home"
    s = cli_json(capsys, "run", "--preset", "code", "--corpus", str(code_corpus), "--home", str(home), *MICRO)
    for key in ("experiment_id", "ppl_scratch", "ppl_nca", "gain", "speedup", "wall_s"):
        assert key in s
    assert s["gain"] == pytest.approx(1 - s["ppl_nca"] / s["ppl_scratch"])
    store = RunStore(home)
    exp = store.get_experiment(s["experiment_id"])
    assert exp.status == "completed" and json.loads(exp.summary_json)["ppl_nca"] == s["ppl_nca"]
    runs = {r.kind: r for r in store.runs_of(exp.id)}
    assert set(runs) == {"stage1", "nca", "scratch"} and all(r.status == "completed" for r in runs.values())
    for kind in ("nca", "scratch"):
        tokens, ppl = store.curve(runs[kind].id, "val_ppl")
        assert tokens[0] == 0 and tokens == sorted(tokens) and len(tokens) >= 5
        assert ppl[-1] < ppl[0]  # it learned something
        model = AutoModelForCausalLM.from_pretrained(store.run_dir(runs[kind]) / "model")
        assert model.config.vocab_size <= 512 + 8
    # stage 1 learned the NCA data: held-out-rule loss fell below the uniform guess
    t1, l1 = store.curve(runs["stage1"].id, "val_loss")
    assert l1[-1] < l1[0] and l1[-1] < torch.log(torch.tensor(10002.0)).item()
    ev = cli_json(capsys, "eval", runs["nca"].id, "--corpus", str(code_corpus), "--home", str(home), "--seq-len", "64",
                  "--tokens", "4096")
    assert ev["ppl"] > 1 and ev["tokens"] > 3500
    # the final evaluation in the run and `ncalab eval` on the same held-out text agree closely
    assert ev["ppl"] == pytest.approx(s["ppl_nca"], rel=0.15)


# slow (end to end); the fast suite keeps test_experiment_parts' transfers of module subsets
@pytest.mark.slow
def test_without_transfer_the_nca_run_is_the_scratch_run(tmp_path, capsys, code_corpus):
    """Re-initialising everything makes the two stage-2 runs identical: same init, data, order,
    schedule and seed. Any difference would mean the baseline was treated differently."""
    s = cli_json(capsys, "run", "--corpus", str(code_corpus), "--home", str(tmp_path / "h"),
                 "--reinit", "attn,mlp,norm", "--seed", "5", *MICRO)
    assert s["ppl_nca"] == s["ppl_scratch"] and s["gain"] == 0


@pytest.mark.parametrize("args, message", [
    (["run", "--preset", "poetry"], "unknown preset"),
    (["run", "--scale", "galactic"], "unknown scale"),
    (["run", "--corpus", "/no/such/corpus"], "not found"),
    (["run", "--set", "stage9.lr=1"], "unknown config key"),
    (["run", "--set", "stage2.schedule=wsd", "--set", "stage2.decay=0"], "stage2.decay is the share of the steps"),
    (["run", "--set", "stage2.schedule=linear"], "stage2.schedule must be one of paper, cosine, constant, wsd"),
    (["run", "--set", "model.n_head=0"], "model.n_head must be positive"),  # not a division by zero
    (["run", "--set", "stage1.band=0.3,0.4,0.5"], "stage1.band takes two numbers"),
    (["run", "--set", "stage1.band=0.3"], "stage1.band"),
    (["eval", "r-00000000", "--corpus", "python-stdlib"], "no run"),
    (["eval", "/no/such/checkpoint", "--corpus", "python-stdlib"], "neither a checkpoint"),
])
def test_bad_input(tmp_path, capsys, args, message):
    code = main(args + ["--home", str(tmp_path / "h")])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err


# slow (end to end); the fast suite keeps the same run's JSON summary and store (above); the
# progress display and the summary table are checked in the full suite only
@pytest.mark.slow
def test_run_prints_progress_and_a_summary_table(tmp_path, capsys, code_corpus):
    code = main(["run", "--corpus", str(code_corpus), "--home", str(tmp_path / "h"), *MICRO])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "final val ppl, scratch" in out and "convergence speedup" in out
    assert "stage 2  scratch" in err
