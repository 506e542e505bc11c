"""Sweeps: grids typed against the config, shared stage-1 and scratch runs, the table, extend
and resume, the CLI, and the transfer controls and remedies the sweeps study."""

import json
import os
import socket

import pytest
import torch

from conftest import MICRO, cli, cli_json, wait_until
from ncalab.errors import NcalabError
from ncalab.config import ModelConfig, TransferConfig
from ncalab.config.grid import parse_grid, setting_label, settings
from ncalab.services import sweeps
from ncalab.services.config import resolve_config
from ncalab.services.experiments import execute
from ncalab.store import RunStore
from ncalab.train.device import choose
from ncalab.train.loop import StageSpec, make_optimizer
from ncalab.train.model import build_model
from ncalab.train.transfer import transfer


def micro_base(corpus, home=None):
    sets = [MICRO[i + 1] for i in range(0, len(MICRO), 2)]
    return resolve_config("code", "tiny", None, sets, corpus=str(corpus), home=home)


def test_grid_is_typed_like_the_config(code_corpus):
    base = micro_base(code_corpus)
    grid = parse_grid(["stage2.lr=1e-3,3e-4", "transfer.reinit=none,attn,attn+norm", "stage1.band=0.3:0.5,0.5:1",
                       "runtime.compile=false"], base)
    assert grid == {"stage2.lr": [1e-3, 3e-4], "transfer.reinit": [[], ["attn"], ["attn", "norm"]],
                    "stage1.band": [[0.3, 0.5], [0.5, 1.0]], "runtime.compile": [False]}
    assert len(settings(grid)) == 2 * 3 * 2 * 1
    # a setting's label is written as --grid takes it, so it can be pasted back
    label = setting_label({"stage1.band": [0.3, 0.5], "transfer.reinit": ["attn", "norm"]})
    assert label == "stage1.band=0.3:0.5 transfer.reinit=attn+norm"
    assert parse_grid(label.split(" "), base) == {"stage1.band": [[0.3, 0.5]], "transfer.reinit": [["attn", "norm"]]}


@pytest.mark.parametrize("items, message", [
    (["stage9.lr=1"], "unknown config key"),
    (["stage2.lr=fast,slow"], "expected a number"),
    (["model.n_layer=2.5"], "expected an integer"),
    (["stage2.lr="], "has no values"),
    (["stage2.lr=1,1"], "twice"),
    (["stage2.lr"], "KEY=V1,V2"),
    (["seed=1,2"], "--seeds"),
])
def test_bad_grids_are_refused(code_corpus, items, message):
    with pytest.raises(NcalabError, match=message):
        parse_grid(items, micro_base(code_corpus))


def test_a_member_that_cannot_run_stores_nothing(tmp_path, code_corpus):
    store = RunStore(tmp_path / "h")
    with pytest.raises(NcalabError, match="divisible"):
        sweeps.create(store, micro_base(code_corpus), ["model.n_head=2,3"], [0])
    assert store.list_sweeps() == [] and store.list_experiments() == []


def test_a_zipped_grid_pairs_values_and_grows_by_whole_settings(tmp_path, code_corpus):
    base = micro_base(code_corpus)
    # width with head count at a fixed head size; a key may repeat a value when zipped
    grid = parse_grid(["model.d_model=32,64,96", "model.n_head=2,4,4"], base, zipped=True)
    assert settings(grid, zipped=True) == [{"model.d_model": 32, "model.n_head": 2}, {"model.d_model": 64, "model.n_head": 4},
                                           {"model.d_model": 96, "model.n_head": 4}]
    with pytest.raises(NcalabError, match="as many values"):
        parse_grid(["model.d_model=32,64", "model.n_head=2"], base, zipped=True)
    with pytest.raises(NcalabError, match="listed twice"):
        parse_grid(["model.d_model=32,32", "model.n_head=2,2"], base, zipped=True)

    store = RunStore(tmp_path / "h")
    made = sweeps.create(store, base, ["model.d_model=32,64", "model.n_head=2,4"], [0], name="width", zipped=True)
    shapes = sorted((e.config["model"]["d_model"], e.config["model"]["n_head"]) for e in store.experiments_of_sweep(made["sweep_id"]))
    assert made["settings"] == 2 and shapes == [(32, 2), (64, 4)]
    with pytest.raises(NcalabError, match="give values for model.n_head"):
        sweeps.extend(store, made["sweep_id"], ["model.d_model=128"], [])
    more = sweeps.extend(store, made["sweep_id"], ["model.d_model=64,128", "model.n_head=4,4"], [])
    assert len(more["experiments"]) == 1 and more["settings"] == 3  # (64, 4) existed; (128, 4) is new
    assert sweeps.list_sweeps(store)[0]["grid_label"] == "d_model+n_head(3) x 1 seed"
    tab = sweeps.table(store, made["sweep_id"])
    assert len(tab["rows"]) == 3 and tab["zip"]
    assert [p["value"] for p in sweeps.gain_by_key(tab, "model.n_head")] == [2, 4]


def test_cancel_stops_the_queued_members_of_one_sweep_only(tmp_path, code_corpus):
    store = RunStore(tmp_path / "h")
    made = sweeps.create(store, micro_base(code_corpus), ["transfer.reinit=none,attn"], [0])
    other = sweeps.create(store, micro_base(code_corpus), ["transfer.reinit=mlp"], [0])  # another sweep: untouched
    assert sorted(sweeps.cancel(store, made["sweep_id"])) == sorted(made["experiments"])
    assert {e.status for e in store.experiments_of_sweep(made["sweep_id"])} == {"cancelled"}
    assert {e.status for e in store.experiments_of_sweep(other["sweep_id"])} == {"queued"}
    assert sweeps.cancel(store, made["sweep_id"]) == []  # nothing left to stop
    tab = sweeps.table(store, made["sweep_id"])
    assert all(r["status"] == {"cancelled": 1} for r in tab["rows"])
    with pytest.raises(NcalabError, match="no sweep with id"):
        sweeps.cancel(store, "s-00000000")


def _run_queued(store):
    """Run the queued experiments in this process, oldest first (what the job queue does)."""
    for exp in reversed(store.list_experiments(status="queued")):
        assert store.claim_experiment(exp.id, os.getpid(), socket.gethostname())
        execute(store, exp.id)


@pytest.mark.slow
def test_sweep_shares_stage1_and_scratch_and_extends_without_rerunning(tmp_path, code_corpus):
    store = RunStore(tmp_path / "h")
    made = sweeps.create(store, micro_base(code_corpus), ["transfer.reinit=none,attn"], [0, 1], name="what transfers")
    assert len(made["experiments"]) == 4
    _run_queued(store)
    runs = [r for e in store.experiments_of_sweep(made["sweep_id"]) for r in store.runs_of(e.id)]
    trained = {k: [r for r in runs if r.kind == k and r.source_run_id is None] for k in ("stage1", "nca", "scratch")}
    # one stage 1 and one scratch baseline per seed; every setting trains its own transfer
    assert len(trained["stage1"]) == 2 and len(trained["scratch"]) == 2 and len(trained["nca"]) == 4
    for r in runs:
        if r.source_run_id:
            src = store.get_run(r.source_run_id)
            assert r.reuse_key == src.reuse_key and r.status == "completed"
            assert store.curve(r.id, "val_ppl") == store.curve(src.id, "val_ppl")
            if r.kind == "stage1":  # the adopted model is there for the transfer
                assert (store.run_dir(r) / "model" / "config.json").exists()

    tab = sweeps.table(store, made["sweep_id"])
    assert [r["seeds_done"] for r in tab["rows"]] == [2, 2]
    for row in tab["rows"]:
        sums = [store.get_experiment(e).summary for e in row["experiments"]]
        gains = [s["gain"] for s in sums]
        assert row["gain"] == pytest.approx(sum(gains) / 2)
        assert row["gain_sd"] == pytest.approx(abs(gains[0] - gains[1]) / 2 ** 0.5)
        assert row["wins"] == sum(g > 0 for g in gains)
        assert len({s["ppl_scratch"] for s in sums}) == 2  # scratch differs by seed only
    assert tab["rows"][0]["gain"] >= tab["rows"][1]["gain"] and tab["rows"][0]["best"]
    scratch_by_seed = {}
    for e in store.experiments_of_sweep(made["sweep_id"]):
        scratch_by_seed.setdefault(e.seed, set()).add(e.summary["ppl_scratch"])
    assert all(len(v) == 1 for v in scratch_by_seed.values())  # both settings compare with one baseline

    # more seeds and a new value: only the missing members are queued
    more = sweeps.extend(store, made["sweep_id"], ["transfer.reinit=attn,mlp"], [2])
    assert len(more["experiments"]) == 3 * 3 - 4
    again = sweeps.extend(store, made["sweep_id"], ["transfer.reinit=mlp"], [])
    assert again["experiments"] == []
    with pytest.raises(NcalabError, match="does not sweep"):
        sweeps.extend(store, made["sweep_id"], ["stage2.lr=1e-3"], [])
    # a failed member is resumed by the sweep
    victim = more["experiments"][0]
    store.claim_experiment(victim, os.getpid(), socket.gethostname())
    store.finish_experiment(victim, "failed", error="boom")
    assert victim in sweeps.resume(store, made["sweep_id"])
    wait_until(lambda: store.get_experiment(victim).status not in ("queued", "running"),  # a job process runs it
               "the resumed member ending", timeout=120)
    assert store.get_experiment(victim).status == "completed"


@pytest.mark.slow
def test_sweep_cli_runs_through_the_job_queue(tmp_path, capsys, code_corpus):
    home = tmp_path / "h"
    tab = cli_json(capsys, "sweep", "--home", home, "--corpus", code_corpus, *MICRO, "--set", "stage2.tokens=16384",
                   "--grid", "transfer.lr_scale=1,0.1", "--seeds", "1")
    assert tab["done"] == 2 and {r["setting"]["transfer.lr_scale"] for r in tab["rows"]} == {1.0, 0.1}
    logs = list((home / "experiments").glob("*/job.log"))
    assert len(logs) == 2 and any("reused" in p.read_text() for p in logs)  # the jobs shared stage 1 and scratch
    code, out, _ = cli(capsys, "sweep", "show", tab["sweep_id"], "--home", str(home))
    assert code == 0 and "lr_scale=0.1" in out and "★" in out
    code, out, _ = cli(capsys, "sweep", "plot", tab["sweep_id"], "--home", str(home))
    assert code == 0 and "gain" in out
    assert cli_json(capsys, "sweep", "list", "--home", home)["sweeps"][0]["members"] == 2
    code, out, _ = cli(capsys, "sweep", "rm", tab["sweep_id"], "--yes", "--home", str(home))
    assert code == 0 and "2 experiments" in out
    store = RunStore(home)
    assert store.list_sweeps() == [] and store.list_experiments() == []
    assert not any((home / "experiments").iterdir())


@pytest.mark.parametrize("args, message", [
    (["sweep", "--grid", "nope.x=1,2"], "unknown config key"),
    (["sweep", "--grid", "stage2.lr=a,b"], "expected a number"),
    (["sweep"], "at least one --grid"),
    (["sweep", "--grid", "stage2.lr=1e-3", "--seeds", "0"], "--seeds"),
    (["sweep", "--zip", "--grid", "model.d_model=32,64", "--grid", "model.n_head=2"], "as many values"),
    (["sweep", "show", "s-00000000"], "no sweep with id s-00000000"),
    (["sweep", "plot", "s-00000000"], "no sweep with id s-00000000"),
    (["sweep", "extend", "s-00000000", "--seeds", "3"], "no sweep with id s-00000000"),
    (["sweep", "rm", "s-00000000", "--yes"], "no sweep with id s-00000000"),
    (["sweep", "resume", "s-00000000"], "no sweep with id s-00000000"),
    (["sweep", "cancel", "s-00000000"], "no sweep with id s-00000000"),
])
def test_sweep_bad_input_is_one_line(tmp_path, capsys, code_corpus, args, message):
    code, _, err = cli(capsys, *args, "--home", str(tmp_path / "h"))
    assert code != 0 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


M = ModelConfig(n_layer=2, d_model=32, n_head=2)


def test_transfer_controls_keep_scale_but_not_what_was_learned():
    src = build_model(M, 100, 64, seed=1)
    with torch.no_grad():  # make the source unlike a fresh init: what stage 1 would have learned
        for n, p in src.named_parameters():
            p.mul_(3.0).add_(0.05)
    sd_src = src.state_dict()
    shuffled, kept = transfer(src, M, 50, 64, seed=2, settings=TransferConfig(control="shuffle"))
    matched, _ = transfer(src, M, 50, 64, seed=2, settings=TransferConfig(control="matched_scale"))
    fresh = build_model(M, 50, 64, seed=2).state_dict()
    for n in kept:
        a, s, m = sd_src[n].flatten(), shuffled.state_dict()[n].flatten(), matched.state_dict()[n].flatten()
        assert torch.equal(torch.sort(a).values, torch.sort(s).values)  # the same values...
        rms = a.pow(2).mean().sqrt()
        assert m.pow(2).mean().sqrt() == pytest.approx(rms.item(), rel=1e-4)  # ...or the same scale
        if a.numel() > 100:  # ...in an order or a draw unrelated to the NCA weights
            assert not torch.equal(s, a)
            assert abs(torch.corrcoef(torch.stack([a, s]))[0, 1]) < 0.2
            assert abs(torch.corrcoef(torch.stack([a - a.mean(), m]))[0, 1]) < 0.2
            # matched_scale is the scratch init, rescaled
            assert abs(torch.corrcoef(torch.stack([m, fresh[n].flatten()]))[0, 1]) > 0.999


def test_shrink_and_perturb_is_the_formula():
    src = build_model(M, 100, 64, seed=1)
    sp, kept = transfer(src, M, 50, 64, seed=2, settings=TransferConfig(shrink=0.4, perturb=0.1))
    fresh = build_model(M, 50, 64, seed=2).state_dict()
    for n in kept:
        assert torch.allclose(sp.state_dict()[n], 0.4 * src.state_dict()[n] + 0.1 * fresh[n], atol=1e-6)


def test_transferred_weights_freeze_then_learn_slower():
    model = build_model(M, 50, 64, seed=0)
    names = {n for n, _ in model.named_parameters() if ".mlp." in n}
    spec = StageSpec("nca", 20 * 64, 64, lr=1e-2, warmup=0.1, min_lr_ratio=0.1, weight_decay=0.1, grad_clip=1.0,
                     eval_every=0, transferred=frozenset(names), transferred_lr_scale=0.3, freeze_steps=5)
    opt, sched = make_optimizer(model, spec, choose("cpu", "fp32"))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    x = torch.randint(0, 50, (4, 16))
    for step in range(10):
        loss = model(input_ids=x, labels=x).loss
        loss.backward()
        opt.step()
        opt.zero_grad()
        sched.step()
        if step == 4:  # five frozen steps: transferred weights untouched, the rest trained
            for n, p in model.named_parameters():
                assert torch.equal(p, before[n]) == (n in names), n
    for n, p in model.named_parameters():
        assert not torch.equal(p, before[n]), n  # unfrozen after step 5
    groups = {id(p): g["lr"] for g in opt.param_groups for p in g["params"]}
    fresh_lr = next(groups[id(p)] for n, p in model.named_parameters() if n not in names)
    for n, p in model.named_parameters():
        if n in names:  # re-warming after the freeze, at lr_scale of the rest
            assert 0 < groups[id(p)] <= 0.3 * fresh_lr + 1e-12


@pytest.mark.parametrize("change, differs", [
    ({"transfer": {"reinit": ["attn"]}}, {"nca"}),
    ({"transfer": {"lr_scale": 0.5}}, {"nca"}),
    ({"transfer": {"freeze_tokens": 1000}}, {"nca"}),
    ({"transfer": {"control": "matched_stats"}}, {"nca"}),
    ({"stage2": {"lr": 3e-4}}, {"nca", "scratch"}),
    ({"data": {"vocab_size": 1024}}, {"nca", "scratch"}),
    ({"nca": {"alphabet": 2}}, {"stage1", "nca"}),
    ({"stage1": {"band": [0.1, 0.2]}}, {"stage1", "nca"}),
    ({"model": {"d_model": 64}}, {"stage1", "nca", "scratch"}),
    ({"seed": 1}, {"stage1", "nca", "scratch"}),
    ({"runtime": {"threads": 1}}, set()),
    ({"family": "my-family"}, set()),
    ({"stage1": {"schedule": "paper"}}, {"stage1", "nca"}),
    ({"stage2": {"warmup": 750.0}}, {"nca", "scratch"}),
    ({"nca": {"fresh_trajectories": False}}, {"stage1", "nca"}),
    ({"model": {"attention_dropout": 0.1}}, {"stage1", "nca", "scratch"}),
    ({"stage1": {"reuse": "adjacent"}}, set()),  # one trajectory a rule: nothing to spread
    ({"stage1": {"reuse": "adjacent"}, "nca": {"sims_per_rule": 10}}, {"stage1", "nca"}),
])
def test_reuse_keys_follow_exactly_what_determines_each_run(change, differs):
    from ncalab.config import ExperimentConfig, apply_overrides
    from ncalab.experiment.reuse import run_keys

    cpu = choose("cpu", "fp32")
    before = run_keys(ExperimentConfig(), cpu)
    after = run_keys(apply_overrides(ExperimentConfig(), change), cpu)
    assert {k for k in before if before[k] != after[k]} == differs


def test_new_defaults_change_the_keys_of_the_runs_they_change():
    """Fresh trajectories (the paper's) are the new default: an NCA stage 1 stored before them
    keeps its key and a new one gets another; a Dyck stage 1 and the scratch runs do not change."""
    from ncalab.config import ExperimentConfig, apply_overrides
    from ncalab.config.stored import stored_config, with_added
    from ncalab.experiment.reuse import run_keys

    cpu = choose("cpu", "fp32")
    old_tree = ExperimentConfig().to_dict()
    del old_tree["nca"]["fresh_trajectories"], old_tree["stage1"]["schedule"], old_tree["model"]["attention_dropout"]
    del old_tree["eval"]["gsm8k"]["format"], old_tree["eval"]["bbl"]["chance"]
    old = stored_config(old_tree)
    assert old.nca.fresh_trajectories is False and with_added(old_tree)["nca"]["fresh_trajectories"] is False
    # evaluations stored before the paper's protocols resume with the protocol they started with
    assert (old.eval.gsm8k.format, old.eval.bbl.chance) == ("gsm8k", "paper")
    assert (ExperimentConfig().eval.gsm8k.format, ExperimentConfig().eval.bbl.chance) == ("paper", "correct")
    new, was = run_keys(ExperimentConfig(), cpu), run_keys(old, cpu)
    assert new["stage1"] != was["stage1"] and new["nca"] != was["nca"] and new["scratch"] == was["scratch"]
    dyck = {"stage1": {"source": "dyck"}}
    assert run_keys(apply_overrides(ExperimentConfig(), dyck), cpu)["stage1"] == run_keys(apply_overrides(old, dyck), cpu)["stage1"]


def test_reuse_keys_never_cross_devices_or_dtypes():
    from ncalab.config import ExperimentConfig
    from ncalab.experiment.reuse import run_keys
    from ncalab.train.device import Placement

    cfg = ExperimentConfig()
    keys = [run_keys(cfg, Placement(torch.device(d), a)) for d, a in
            (("cpu", None), ("cpu", torch.bfloat16), ("cuda", torch.bfloat16))]
    for kind in ("stage1", "nca", "scratch"):
        assert len({k[kind] for k in keys}) == 3


# slow (end to end); the fast suite keeps test_run_experiment's
# test_without_transfer_the_nca_run_is_the_scratch_run
@pytest.mark.slow
def test_a_null_transfer_reproduces_scratch_exactly(tmp_path, code_corpus):
    """shrink 0, perturb 1 hands the NCA path the scratch init itself: the two stage-2 runs
    must then be the same run, so any gain measured elsewhere comes from the weights."""
    from ncalab.services.experiments import submit

    store = RunStore(tmp_path / "h")
    cfg = micro_base(code_corpus)
    cfg.transfer.shrink, cfg.transfer.perturb = 0.0, 1.0
    exp = submit(cfg.validate(), store)
    assert store.claim_experiment(exp.id, os.getpid(), socket.gethostname())
    summary = execute(store, exp.id)
    runs = {r.kind: r for r in store.runs_of(exp.id)}
    assert store.curve(runs["nca"].id, "val_ppl") == store.curve(runs["scratch"].id, "val_ppl")
    assert summary.gain == 0.0


def test_reuse_keys_of_existing_stores_still_match():
    """Configs stored by the version before the pipeline redesign (and before stage-1 sources,
    sims_per_rule and in-context evaluation existed) must keep their keys, or no new run would
    reuse an old result."""
    from pathlib import Path

    from ncalab.config.stored import stored_config
    from ncalab.experiment.reuse import run_keys
    from ncalab.train.device import Placement

    stored = json.loads((Path(__file__).parent / "data" / "reuse_keys_0.1.0.json").read_text())
    for case in stored["cases"]:
        cfg = stored_config(case["config"])  # as it ran: settings added since at their old values
        amp = None if case["device"] == "cpu" else torch.bfloat16
        assert run_keys(cfg, Placement(torch.device(case["device"]), amp)) == case["keys"], case["name"]


def test_the_paired_gain_and_p_value_match_scipy_and_one_seed_gives_none():
    import math

    import numpy as np
    from scipy import stats

    from ncalab.services.sweeps import paired_by_seed

    nca, scratch = [80.0, 92.0, 85.5, 90.1], [82.0, 91.0, 88.0, 93.3]
    got = paired_by_seed([{"ppl_nca": a, "ppl_scratch": b} for a, b in zip(nca, scratch)])
    gains = 1 - np.array(nca) / np.array(scratch)
    half = stats.t.ppf(0.975, 3) * gains.std(ddof=1) / 2
    assert got["gain_ci"] == pytest.approx([gains.mean() - half, gains.mean() + half], rel=1e-9)
    assert got["p_value"] == pytest.approx(stats.ttest_rel(np.log(nca), np.log(scratch)).pvalue, rel=1e-9)
    one = paired_by_seed([{"ppl_nca": 80.0, "ppl_scratch": 82.0}])
    assert one["gain_ci"] is None and one["p_value"] is None and "one seed" in one["paired_note"]
    assert not math.isnan(got["p_value"]) and 0 < got["p_value"] < 1
