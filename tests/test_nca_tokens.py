"""The NCA tokenizer: patch tokens, frame layout, exact round trip, loss mask."""

import numpy as np
import pytest

from ncalab.errors import NcalabError
from ncalab.nca.config import NCAConfig
from ncalab.nca.reference import reference_tokens
from ncalab.nca.stream import frames_to_sequences, patch_tokens
from ncalab.nca.tokens import (
    IGNORE_INDEX, decode_frames, encode_frames, grids_to_patch_tokens, loss_mask, make_example,
)


def test_patch_token_is_base_c_number_top_left_least_significant(cfg):
    grid = np.zeros((12, 12), dtype=np.uint8)
    grid[0, 0], grid[0, 1], grid[1, 0], grid[1, 1] = 1, 2, 3, 4
    grid[0, 2] = 9  # top-left cell of the second patch in row-major order
    toks = grids_to_patch_tokens(grid, cfg)
    assert toks[0] == 1 + 2 * 10 + 3 * 100 + 4 * 1000
    assert toks[1] == 9 and toks.shape == (36,)


def test_fast_tokens_equal_reference_loop():
    for cfg in (NCAConfig(), NCAConfig(alphabet=3, patch=3, height=9, width=6)):
        grids = np.random.default_rng(0).integers(0, cfg.alphabet, size=(5, 4, cfg.height, cfg.width)).astype(np.uint8)
        fast = patch_tokens(grids, cfg)
        ref = np.array([[reference_tokens(g, cfg) for g in traj] for traj in grids])
        assert np.array_equal(fast, ref)
        assert np.array_equal(fast, grids_to_patch_tokens(grids, cfg))


def test_frame_layout_and_round_trip(cfg):
    grids = np.random.default_rng(1).integers(0, 10, size=(3, 27, 12, 12)).astype(np.uint8)
    toks = encode_frames(grids, cfg)
    assert cfg.frame_len == 38 and toks.shape == (3, 27 * 38)
    framed = toks.reshape(3, 27, 38)
    assert (framed[..., 0] == 10_000).all() and (framed[..., -1] == 10_001).all()
    assert framed[..., 1:-1].max() < 10_000
    assert np.array_equal(decode_frames(toks, cfg), grids)


def test_decode_rejects_broken_layout(cfg):
    toks = encode_frames(np.zeros((2, 12, 12), dtype=np.uint8), cfg)
    with pytest.raises(NcalabError):
        decode_frames(toks[:-1], cfg)
    bad = toks.copy()
    bad[0] = 5
    with pytest.raises(NcalabError):
        decode_frames(bad, cfg)


def test_sequence_and_loss_mask(cfg):
    assert cfg.frames_per_seq == 27
    grids = np.random.default_rng(2).integers(0, 10, size=(2, 27, 144)).astype(np.uint8)
    seqs = frames_to_sequences(grids, cfg)
    assert seqs.shape == (2, 1025) and seqs.dtype == np.uint16
    assert np.array_equal(seqs, encode_frames(grids.reshape(2, 27, 12, 12), cfg)[:, :1025])
    mask = loss_mask(cfg)
    # targets are positions 1..L; the first frame (positions 0..37) is never a target
    assert mask.shape == (1024,) and not mask[:37].any() and mask[37:].all()
    inputs, labels = make_example(seqs[0], cfg)
    assert np.array_equal(inputs, seqs[0, :-1]) and np.array_equal(labels[37:], seqs[0, 38:])
    assert (labels[:37] == IGNORE_INDEX).all()
    # min_grid = 0 predicts everything
    assert loss_mask(NCAConfig(min_grid=0)).all()


@pytest.mark.parametrize("kwargs, message", [
    ({"height": 13}, "not divisible"),
    ({"alphabet": 10, "patch": 3}, "more than the limit"),
    ({"alphabet": 1}, "alphabet"),
    ({"seq_len": 0}, "positive"),
    ({"temperature": -1}, "temperature"),
])
def test_bad_settings_are_refused(kwargs, message):
    with pytest.raises(NcalabError, match=message):
        NCAConfig(**kwargs)
