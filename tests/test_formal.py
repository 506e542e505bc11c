"""Hu et al.'s formal languages: the copy language ww and their k-shuffle-Dyck (dyck.generator
= hu), by their definitions; and the Dyck reuse keys of before the option stay."""

import numpy as np
import pytest

from ncalab.config import ExperimentConfig
from ncalab.data.dyck import DyckConfig, dyck_sequences, is_valid_prefix
from ncalab.data.formal import WWSettings, hu_shuffle_dyck, ww_sequences
from ncalab.sources.interface import SOURCES
from ncalab.services.config import resolve_config


def _pairs(seq, lo, hi):
    """Split a sequence into ww pairs with |w| in [lo, hi] (the last may be cut); None if it is not one."""
    pos, sizes = 0, []
    while pos < len(seq):
        rest = len(seq) - pos
        fits = [m for m in range(lo, hi + 1) if np.array_equal(seq[pos:pos + m][:max(0, rest - m)],
                                                               seq[pos + m:pos + 2 * m])]
        if not fits:
            return None
        sizes.append(fits[0])
        pos += 2 * fits[0]
    return sizes


def test_ww_is_a_run_of_words_each_followed_by_its_copy():
    s = WWSettings(symbols=64, min_length=10, max_length=40)
    seqs = ww_sequences(s, 0, "train", 0, 16, 1025)
    for seq in seqs:
        sizes = _pairs(seq, 10, 40)
        assert sizes is not None and all(10 <= m <= 40 for m in sizes)
    assert seqs.min() >= 0 and seqs.max() < 64
    fixed = ww_sequences(WWSettings(min_length=7, max_length=7), 1, "val", 0, 4, 140)
    blocks = fixed.reshape(4, 10, 14)
    assert np.array_equal(blocks[:, :, :7], blocks[:, :, 7:])
    assert np.array_equal(seqs[4:6], ww_sequences(s, 0, "train", 4, 2, 1025))


def test_hu_shuffle_dyck_walk_follows_its_definition():
    seqs = hu_shuffle_dyck(8, 6, 0.51, 0, "train", 0, 64, 1025)
    cfg = DyckConfig(pairs=8, depth_max=6, shuffle=True)
    depth = np.cumsum(np.where(seqs < 8, 1, -1), axis=1)
    assert depth.min() >= 0 and depth.max() <= 6
    assert (seqs[:, 0] < 8).all() and (seqs[:, 1:][depth[:, :-1] == 0] < 8).all()  # depth 0: open
    assert (seqs[:, 1:][depth[:, :-1] == 6] >= 8).all()  # depth_max: close
    assert all(is_valid_prefix(s, cfg) for s in seqs)  # every closing closes an open bracket of its type


def _closing_share_of_the_most_open_type(seqs, pairs):
    """Where one type has 3 open brackets and another 1 (and no other is open), how often the
    next closing closes the type with 3."""
    hits, total = 0, 0
    for seq in seqs:
        counts = np.zeros(pairs, dtype=int)
        for tok in seq:
            open_now = counts[counts > 0]
            if tok >= pairs and sorted(open_now.tolist()) == [1, 3]:
                total += 1
                hits += counts[tok - pairs] == 3
            counts[tok % pairs] += 1 if tok < pairs else -1
    return hits / total


def test_hu_closes_a_uniform_open_type_where_ncalab_closes_a_uniform_open_bracket():
    hu = hu_shuffle_dyck(2, 8, 0.5, 0, "train", 0, 300, 513)
    words = dyck_sequences(DyckConfig(pairs=2, depth_min=4, depth_max=8, shuffle=True), 0, "train", 0, 300, 513)
    assert _closing_share_of_the_most_open_type(hu, 2) == pytest.approx(0.5, abs=0.06)
    assert _closing_share_of_the_most_open_type(words, 2) == pytest.approx(0.75, abs=0.06)


def test_the_hu_option_is_a_setting_of_shuffle_dyck_and_old_keys_stay():
    cfg = resolve_config("code", "tiny", None, ["stage1.source=shuffle_dyck", "dyck.generator=hu", "dyck.depth_max=8",
                                                "dyck.p_open=0.51", "nca.seq_len=64"])
    src = SOURCES["shuffle_dyck"]
    got = src.sequences(cfg, "train", 0, 3, 65)
    assert np.array_equal(got, hu_shuffle_dyck(64, 8, 0.51, cfg.seed, "train", 0, 3, 65))
    assert src.reuse_settings(cfg)["dyck"]["generator"] == "hu"
    plain = ExperimentConfig()
    plain.stage1.source = "shuffle_dyck"
    assert "generator" not in src.reuse_settings(plain)["dyck"]  # keys of runs from before the option
    cfg.stage1.source = "dyck"
    assert "generator" not in SOURCES["dyck"].reuse_settings(cfg)["dyck"]
    with pytest.raises(Exception, match="dyck.generator must be one of words, hu"):
        resolve_config("code", "tiny", None, ["dyck.generator=other"])
