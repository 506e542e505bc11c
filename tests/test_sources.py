"""Stage-1 sources (NCA, Dyck, shuffle-Dyck, natural text), their compute accounting and
matching, and the in-context evaluation of stage-1 models, end to end on real data."""

import math

import numpy as np
import pytest

from conftest import MICRO, WIKITEXT, cli_json
from ncalab.cli.main import main
from ncalab.config import STAGE1_SOURCES, ExperimentConfig, ModelConfig
from ncalab.planning.compute import model_compute
from ncalab.sources.interface import SOURCES, stage1_tokens
from ncalab.experiment.stages import PIPELINE
from ncalab.nca.bands import DOMAIN_BANDS
from ncalab.nca.config import NCAConfig
from ncalab.services import sweeps
from ncalab.services.config import resolve_config
from ncalab.store import RunStore
from ncalab.evaluation.incontext import _compare, frame_accuracy, held_out_sequences
from ncalab.train.model import build_model, count_params



def test_every_declared_source_has_an_entry_and_the_pipeline_is_declared():
    assert set(SOURCES) == set(STAGE1_SOURCES)
    kinds = [s.kind for s in PIPELINE if hasattr(s, "kind")]
    assert kinds == ["stage1", "nca", "scratch"]
    order = [getattr(s, "kind", None) or s.name for s in PIPELINE]
    assert order.index("stage1") < order.index("transfer") < order.index("nca") < order.index("scratch")


def test_model_compute_counts_the_built_model():
    for m, vocab, length in ((ModelConfig(), 10_002, 512), (ModelConfig(n_layer=2, d_model=64, n_head=4), 128, 256)):
        c = model_compute(m, vocab, length)
        model = build_model(m, vocab, length, seed=0)
        assert c.params == count_params(model) and c.params_no_embeddings == count_params(model, embeddings=False)
        # 6N (blocks, final norm, head) + 12·L·d·T
        assert c.flops_per_token == 6 * (c.params_no_embeddings + vocab * m.d_model) + 12 * m.n_layer * m.d_model * length


def test_matching_flops_gives_each_source_the_reference_compute():
    cfg = ExperimentConfig()
    cfg.stage1.source, cfg.stage1.match, cfg.stage1.match_source = "dyck", "flops", "nca"
    cfg.validate()
    fpt = {s: model_compute(cfg.model, SOURCES[s].vocab_size(cfg), cfg.nca.seq_len).flops_per_token for s in ("nca", "dyck")}
    tokens = stage1_tokens(cfg)
    assert tokens > cfg.stage1.tokens  # the small Dyck vocabulary makes each token cheaper
    assert tokens * fpt["dyck"] == pytest.approx(cfg.stage1.tokens * fpt["nca"], rel=1e-6)
    cfg.stage1.match = "tokens"
    assert stage1_tokens(cfg) == cfg.stage1.tokens


# The quick subset pre-pre-trains on Dyck; the full suite on every source the paper compares.
@pytest.mark.parametrize("source", ["dyck", pytest.param("shuffle_dyck", marks=pytest.mark.slow),
                                    pytest.param("text", marks=pytest.mark.slow)])
def test_each_source_pre_pre_trains_and_transfers(tmp_path, capsys, code_corpus, source):
    # 48 steps at a higher rate: enough for a one-layer model to learn each source's structure
    extra = ["--set", f"stage1.source={source}", "--set", "stage1.tokens=49152", "--set", "stage1.eval_every=12288",
             "--set", "stage1.lr=3e-3"]
    if source == "text":
        extra += ["--set", f"stage1.corpus={WIKITEXT}"]
    home = tmp_path / "h"
    s = cli_json(capsys, "run", "--corpus", str(code_corpus), "--home", str(home), *MICRO, *extra)
    assert s["source"] == source and s["gain"] == pytest.approx(1 - s["ppl_nca"] / s["ppl_scratch"])
    store = RunStore(home)
    runs = {r.kind: r for r in store.runs_of(s["experiment_id"])}
    _, loss = store.curve(runs["stage1"].id, "val_loss")
    vocab = s["compute"]["stage1"]["params"] - s["compute"]["stage1"]["params_no_embeddings"]
    vocab //= 2 * 32  # embedding and head of width 32
    assert loss[-1] < loss[0] and loss[-1] < math.log(vocab)  # it learned the held-out sequences
    if source != "text":
        assert vocab == 128  # 64 bracket pairs
        validity = s["in_context"]["dyck_validity"]
        assert 0.0 <= validity <= 1.0
    # every stage's compute is stored: FLOPs = FLOPs per token x tokens trained
    for kind, c in s["compute"].items():
        assert c["flops"] == pytest.approx(c["flops_per_token"] * c["tokens"]) and c["device_s"] > 0
    d = cli_json(capsys, "runs", "show", s["experiment_id"], "--home", str(home))
    assert d["summary"]["compute"]["stage1"]["tokens"] == 49152
    if source == "text":  # natural text has no in-context evaluation: none is run, and asking is an error
        assert not s["in_context"]
        assert main(["eval", s["experiment_id"], "--icl", "--home", str(home)]) != 0
        err = capsys.readouterr().err
        assert "trained on text, which has no in-context evaluation" in err and "Traceback" not in err


def test_the_text_sample_is_what_stage_1_holds_out(tmp_path):
    """What the front ends show of the text source is its held-out text as stage 1 reads it: the
    same tokenizer, split and packing as the experiment's prepared data (made here with another
    budget and a cache of its own)."""
    from ncalab.data import language
    from ncalab.services.source_samples import source_config

    cfg = source_config("text", sets=[f"stage1.corpus={WIKITEXT}", "data.vocab_size=512", "data.val_fraction=0.2"])
    got = SOURCES["text"].sample(cfg, 3)
    length = cfg.stage1_seq_len
    lang = language.prepare(str(WIKITEXT), cfg.data, tmp_path, train_tokens=100_000, val_tokens=3 * length)
    assert got.sequences.shape == (3, length) and got.sequences.dtype == np.int64
    assert np.array_equal(got.sequences.ravel(), np.asarray(lang.val[: 3 * length]))
    text = lang.tokenizer.decode(got.sequences[0].tolist())
    assert text.split()[5] in WIKITEXT.read_text()  # WikiText words, not ids of another vocabulary
    assert got.stats["corpus"] == str(WIKITEXT) and got.stats["vocabulary"] == 512
    assert 0.0 < got.stats["gzip score"] < 1.0
    # shown with nothing set, it reads the standard library (its own sample_settings)
    assert source_config("text").stage1.corpus == "python-stdlib"


# slow (end to end); the fast suite keeps the text sample read with stage 2's data (above) and
# test_experiment_parts' test_transfer_keeps_the_embeddings_of_a_shared_vocabulary
@pytest.mark.slow
def test_the_text_source_keeps_its_embeddings_with_stage_2s_tokenizer(tmp_path, capsys, code_corpus):
    """The paper's C4 arm: stage 1 reads WikiText with the BPE of stage 2's corpus, and the
    warm start keeps its embeddings and head (so both models have stage 2's vocabulary)."""
    sets = ["--set", "stage1.source=text", "--set", f"stage1.corpus={WIKITEXT}", "--set", "stage1.tokens=16384"]
    home = tmp_path / "h"
    kept = cli_json(capsys, "run", "--corpus", str(code_corpus), "--home", str(home), *MICRO, *sets,
                    "--set", "transfer.embeddings=paper")
    own = cli_json(capsys, "run", "--corpus", str(code_corpus), "--home", str(home), *MICRO, *sets)
    c_kept = kept["compute"]
    assert c_kept["stage1"]["params"] == c_kept["nca"]["params"]  # one vocabulary in both stages
    store = RunStore(home)
    runs = {e: {r.kind: r for r in store.runs_of(e)} for e in (kept["experiment_id"], own["experiment_id"])}
    a, b = runs[kept["experiment_id"]], runs[own["experiment_id"]]
    assert a["stage1"].reuse_key != b["stage1"].reuse_key and a["nca"].reuse_key != b["nca"].reuse_key
    assert a["scratch"].reuse_key == b["scratch"].reuse_key and kept["ppl_nca"] != own["ppl_nca"]
    # before any stage-2 step, new embeddings and head predict about uniformly over the 512-token
    # vocabulary; kept ones have seen stage 2's tokens in WikiText (measured: 470 against 510
    # after this micro stage 1 of 16k tokens)
    start_kept = store.curve(a["nca"].id, "val_ppl")[1][0]
    start_own = store.curve(b["nca"].id, "val_ppl")[1][0]
    assert start_kept < 0.97 * start_own and start_own > 400


# slow (end to end); the fast suite keeps each source's pre-pre-training and transfer, and
# test_sweeps' grid and reuse-key tests
@pytest.mark.slow
def test_a_source_sweep_trains_one_scratch_baseline_per_seed(tmp_path, code_corpus):
    store = RunStore(tmp_path / "h")
    sets = [MICRO[i + 1] for i in range(0, len(MICRO), 2)]
    base = resolve_config("code", "tiny", None, sets, corpus=str(code_corpus))
    made = sweeps.create(store, base, ["stage1.source=nca,dyck"], [0])
    from test_sweeps import _run_queued

    _run_queued(store)
    runs = [r for e in store.experiments_of_sweep(made["sweep_id"]) for r in store.runs_of(e.id)]
    trained = {k: [r for r in runs if r.kind == k and r.source_run_id is None] for k in ("stage1", "nca", "scratch")}
    assert len(trained["stage1"]) == 2 and len(trained["nca"]) == 2 and len(trained["scratch"]) == 1
    tab = sweeps.table(store, made["sweep_id"])
    assert {r["label"] for r in tab["rows"]} == {"stage1.source=nca", "stage1.source=dyck"}
    assert len({r["ppl_scratch"] for r in tab["rows"]}) == 1


@pytest.mark.parametrize("sets, message", [
    (["stage1.source=poetry"], "stage1.source must be one of"),
    (["stage1.source=text"], "needs a corpus"),
    (["stage1.source=dyck", "dyck.depth_min=5", "dyck.depth_max=3"], "is empty"),
    (["stage1.source=dyck", "dyck.depth_max=300"], "more than the stage-1 sequence"),
    (["stage1.match=flops"], "needs a reference"),
    (["stage1.match=fair"], "stage1.match must be one of"),
])
def test_bad_sources_are_one_line_errors_and_store_nothing(tmp_path, capsys, sets, message):
    home = tmp_path / "h"
    args = ["run", "--home", str(home)] + [x for s in sets for x in ("--set", s)]
    code = main(args)
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (home / "ncalab.db").exists() or RunStore(home).list_experiments() == []


def test_compare_scores_frames_and_cells():
    cfg = NCAConfig()
    rng = np.random.default_rng(0)
    target = rng.integers(0, cfg.patch_vocab, size=(3, cfg.patches_per_frame))
    pred = target.copy()
    pred[1, 0] = (target[1, 0] + 1) % cfg.patch_vocab  # one patch off: at least 1 of its 4 cells wrong
    pred[2, :] = cfg.start_token  # a delimiter is no patch: every cell wrong
    exact, cells = _compare(pred, target, cfg)
    assert exact == 1
    wrong_in_patch = int((np.array(np.unravel_index(pred[1, 0], (10,) * 4)) != np.array(np.unravel_index(target[1, 0], (10,) * 4))).sum())
    assert cells == cfg.cells + (cfg.cells - wrong_in_patch) + 0


def test_frame_accuracy_of_a_copy_the_last_frame_predictor_is_the_share_of_static_frames():
    """A predictor that repeats the previous frame is exactly right on frames that did not
    change and right on the cells that did not change: the metric must say so."""
    cfg = NCAConfig(seq_len=256)
    seqs = held_out_sequences(cfg, DOMAIN_BANDS["code"], seed=3, n=24)
    fl, ppf = cfg.frame_len, cfg.patches_per_frame

    def copy_last(prefixes, n):
        return [list(p[-fl : -fl + ppf]) for p in prefixes]  # the previous frame's patches

    acc = frame_accuracy(None, cfg, seqs, None, predict=copy_last)
    from ncalab.nca.tokens import patch_tokens_to_grids

    for frame, (exact, cells) in acc.items():
        f = frame - 1
        prev = patch_tokens_to_grids(seqs[:, (f - 1) * fl + 1 : (f - 1) * fl + 1 + ppf], cfg)
        cur = patch_tokens_to_grids(seqs[:, f * fl + 1 : f * fl + 1 + ppf], cfg)
        assert exact == pytest.approx((prev == cur).all(axis=(1, 2)).mean())
        assert cells == pytest.approx((prev == cur).mean())
    assert min(acc) == cfg.min_grid + 1 and max(acc) == (cfg.seq_len - ppf) // fl + 1


# slow (end to end); the fast suite keeps test_incontext's scoring and test_run_experiment's stored
# summary with in-context metrics
@pytest.mark.slow
def test_nca_stage1_in_context_metrics_are_stored_and_eval_icl_recomputes_them(tmp_path, capsys, code_corpus):
    home = tmp_path / "h"
    s = cli_json(capsys, "run", "--corpus", str(code_corpus), "--home", str(home), *MICRO)
    assert {"icl_frame_acc", "icl_cell_acc"} <= set(s["in_context"])
    assert all(0.0 <= v <= 1.0 for v in s["in_context"].values())
    other = [k for k in s["in_context"] if "@" in k]
    assert other and all(k.split("@")[1] in ("0-0.3", "0.4-0.5", "0.5-1") for k in other)  # the bands beside 0.3-0.4
    ev = cli_json(capsys, "eval", s["experiment_id"], "--icl", "--sequences", "2", "--home", str(home))
    assert ev["sequences"] == 2 and {p["name"] for p in ev["points"]} >= {"icl_frame_acc", "icl_cell_acc"}
    store = RunStore(home)
    stage1 = store.get_run(s["runs"]["stage1"])
    stored = store.metrics(stage1.id, "icl_cell_acc")
    assert [p.step for p in stored] == sorted({p["step"] for p in ev["points"] if p["name"] == "icl_cell_acc"})
    p = cli_json(capsys, "runs", "plot", stage1.id, "--metric", "icl_cell_acc", "--x", "step", "--home", str(home))
    assert p["curves"][0]["x"] == [pt.step for pt in stored]
    code = main(["eval", s["experiment_id"], "--home", str(home)])
    assert code != 0 and "--corpus CORPUS" in capsys.readouterr().err
