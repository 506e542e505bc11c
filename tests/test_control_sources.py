"""The control sources (issue 39): shuffled and n-gram versions of any stage-1 source."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from conftest import MICRO, cli
from ncalab.config import ExperimentConfig, apply_overrides
from ncalab.sources.controls import NGRAM, SHUFFLED, NgramModel, shuffle_tokens
from ncalab.sources.interface import SOURCES


@settings(max_examples=60, deadline=None)
@given(arrays(np.int64, st.tuples(st.integers(1, 4), st.integers(1, 40)), elements=st.integers(0, 30)),
       st.integers(0, 2**31))
def test_a_shuffled_sequence_holds_exactly_the_tokens_of_the_original(seqs, seed):
    out = shuffle_tokens(seqs, seed)
    assert out.shape == seqs.shape
    for row, shuffled in zip(seqs, out, strict=True):
        assert sorted(row.tolist()) == sorted(shuffled.tolist())
    assert np.array_equal(out, shuffle_tokens(seqs, seed))  # a pure function of the seed and the sequence


def test_shuffling_destroys_the_order():
    seqs = np.tile(np.arange(64), (8, 1))
    one, other = shuffle_tokens(seqs, 0), shuffle_tokens(seqs, 1)
    assert not np.array_equal(one, other)
    assert np.mean(one[:, 1:] == one[:, :-1] + 1) < 0.1  # the next token follows its predecessor rarely


def dyck_cfg(**sets):
    return apply_overrides(ExperimentConfig(), {"stage1": {"source": "ngram"}, "ngram": {"of": "dyck", **sets}})


@pytest.mark.parametrize("order", [1, 2, 3])
def test_ngram_samples_have_the_fitted_models_frequencies(order):
    cfg = apply_overrides(dyck_cfg(order=order), {"dyck": {"pairs": 2}})  # 4 tokens: every context frequent
    fit_on = SOURCES["dyck"].sequences(cfg, "train", 0, 200, 129)
    model = NgramModel(order).fit(fit_on)
    rng = np.random.default_rng(0)
    samples = np.stack([model.sample(129, rng) for _ in range(400)])
    # the empirical next-token distribution after each frequent context, against the fitted one
    k, seen = order - 1, {}
    padded = np.concatenate([np.full((len(samples), k), -1), samples], axis=1)
    for row in padded:
        for t in range(k, len(row)):
            seen.setdefault(tuple(row[t - k:t].tolist()), []).append(int(row[t]))
    checked = 0
    for context, nexts in seen.items():
        if len(nexts) < 1500:
            continue
        fitted = model.probabilities(context)
        tokens, counts = np.unique(nexts, return_counts=True)
        empirical = dict(zip(tokens.tolist(), (counts / counts.sum()).tolist(), strict=True))
        tv = 0.5 * sum(abs(empirical.get(t, 0) - fitted.get(t, 0)) for t in set(fitted) | set(empirical))
        assert tv < 0.05, (context, tv, len(nexts))  # sampling noise of >= 1,500 draws over 4 tokens: ~0.02
        assert set(empirical) <= set(fitted)  # nothing the fitted stream never showed after it
        checked += 1
    assert checked >= 1
    again = np.stack([model.sample(129, np.random.default_rng(0)) for _ in range(1)])
    assert np.array_equal(again[0], samples[0])  # a pure function of the seed


def test_an_ngram_of_dyck_keeps_local_structure_and_loses_balance():
    cfg = dyck_cfg(order=2)
    data = NGRAM.open(cfg, Path("/nonexistent"), lambda _: None)
    inputs, targets = data.batches.next()
    assert inputs.shape == (cfg.stage1.batch_size, cfg.stage1_seq_len) and targets.shape == inputs.shape
    assert int(inputs.max()) < NGRAM.vocab_size(cfg)
    depth = np.cumsum(np.where(inputs.numpy() < cfg.dyck.pairs, 1, -1), axis=1)
    assert (depth < 0).any()  # Dyck never closes more brackets than it opened; its bigrams do


def test_a_shuffled_nca_stream_keeps_each_sequences_tokens_its_mask_and_resumes():
    cfg = apply_overrides(ExperimentConfig(), {"stage1": {"source": "shuffled", "batch_size": 4},
                                               "nca": {"seq_len": 128}, "shuffled": {"of": "nca"}})
    inner = SOURCES["nca"].open(cfg, Path("/nonexistent"), lambda _: None)
    data = SHUFFLED.open(cfg, Path("/nonexistent"), lambda _: None)
    a_in, a_t = inner.batches.next()
    b_in, b_t = data.batches.next()
    assert np.array_equal(a_t.numpy() == -100, b_t.numpy() == -100)  # the loss mask is the wrapped source's
    for x, y, tx, ty in zip(a_in.numpy(), b_in.numpy(), a_t.numpy(), b_t.numpy(), strict=True):
        assert sorted([*x.tolist(), tx[-1]]) == sorted([*y.tolist(), ty[-1]])
        assert not np.array_equal(x, y)
    state = data.batches.state_dict()
    nxt = data.batches.next()
    data.batches.load_state_dict(state)
    assert all(np.array_equal(p.numpy(), q.numpy()) for p, q in zip(nxt, data.batches.next(), strict=True))
    assert SHUFFLED.vocab_size(cfg) == SOURCES["nca"].vocab_size(cfg)


def test_the_controls_are_sources_with_keys_of_their_own():
    from ncalab.experiment.reuse import run_keys
    from ncalab.train.device import choose

    cpu = choose("cpu", "fp32")
    base = apply_overrides(ExperimentConfig(), {"stage1": {"source": "ngram"}})
    keys = {o: run_keys(apply_overrides(base, {"ngram": {"order": o}}), cpu)["stage1"] for o in (1, 2, 3)}
    assert len(set(keys.values())) == 3
    shuffled = run_keys(apply_overrides(ExperimentConfig(), {"stage1": {"source": "shuffled"}}), cpu)["stage1"]
    plain = run_keys(ExperimentConfig(), cpu)["stage1"]
    assert shuffled != plain and shuffled not in keys.values()
    assert {"shuffled", "ngram"} <= set(SOURCES)


@pytest.mark.parametrize("sets, message", [
    (["stage1.source=ngram", "ngram.order=0"], "ngram.order must be 1, 2 or 3"),
    (["stage1.source=ngram", "ngram.order=9"], "ngram.order must be 1, 2 or 3"),
    (["stage1.source=shuffled", "shuffled.of=nope"], "unknown source 'nope'"),
    (["stage1.source=shuffled", "shuffled.of=ngram"], "not the control 'ngram'"),
])
def test_bad_controls_are_one_line_and_store_nothing(tmp_path, capsys, code_corpus, sets, message):
    home = tmp_path / "h"
    args = [a for s in sets for a in ("--set", s)]
    code, _, err = cli(capsys, "run", "--corpus", str(code_corpus), "--home", str(home), *MICRO, *args)
    assert code != 0 and message in err and len(err.strip().splitlines()) == 1
    assert not home.exists()
