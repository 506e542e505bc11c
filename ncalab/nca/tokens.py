"""The NCA tokenizer: patches to tokens, frames with delimiters, sequences and loss mask (spec 3)."""

from __future__ import annotations

import numpy as np

from ncalab.errors import NcalabError
from ncalab.nca.config import NCAConfig

IGNORE_INDEX = -100  # label value that transformers' loss skips


def _powers(cfg: NCAConfig) -> np.ndarray:
    # Row-major index i inside the patch; the top-left cell is the least significant digit.
    return (cfg.alphabet ** np.arange(cfg.patch * cfg.patch, dtype=np.int64)).astype(np.int64)


def grids_to_patch_tokens(grids: np.ndarray, cfg: NCAConfig) -> np.ndarray:
    """(..., H, W) colours -> (..., (H/P)*(W/P)) patch tokens, patches in row-major order."""
    p = cfg.patch
    *lead, h, w = grids.shape
    x = grids.reshape(*lead, h // p, p, w // p, p)
    x = np.moveaxis(x, -3, -2)  # (..., H/P, W/P, P, P)
    x = x.reshape(*lead, (h // p) * (w // p), p * p).astype(np.int64)
    return x @ _powers(cfg)


def patch_tokens_to_grids(tokens: np.ndarray, cfg: NCAConfig) -> np.ndarray:
    """Inverse of grids_to_patch_tokens."""
    p, c = cfg.patch, cfg.alphabet
    tokens = np.asarray(tokens, dtype=np.int64)
    if tokens.size and (tokens.min() < 0 or tokens.max() >= cfg.patch_vocab):
        raise NcalabError("token out of the patch vocabulary")
    *lead, n = tokens.shape
    digits = (tokens[..., None] // _powers(cfg)) % c  # (..., n, P*P)
    hp, wp = cfg.height // p, cfg.width // p
    x = digits.reshape(*lead, hp, wp, p, p)
    x = np.moveaxis(x, -2, -3)  # (..., H/P, P, W/P, P)
    return x.reshape(*lead, cfg.height, cfg.width).astype(np.uint8 if c <= 255 else np.int64)


def encode_frames(grids: np.ndarray, cfg: NCAConfig) -> np.ndarray:
    """(..., F, H, W) frames -> (..., F * frame_len) tokens: [START] patches [END] per frame."""
    patches = grids_to_patch_tokens(grids, cfg)
    *lead, f, n = patches.shape
    out = np.empty((*lead, f, n + 2), dtype=np.int64)
    out[..., 0] = cfg.start_token
    out[..., 1:-1] = patches
    out[..., -1] = cfg.end_token
    return out.reshape(*lead, f * (n + 2))


def decode_frames(tokens: np.ndarray, cfg: NCAConfig) -> np.ndarray:
    """(..., F * frame_len) tokens -> (..., F, H, W); checks every delimiter."""
    tokens = np.asarray(tokens, dtype=np.int64)
    *lead, t = tokens.shape
    if t % cfg.frame_len:
        raise NcalabError(f"{t} tokens are not a whole number of {cfg.frame_len}-token frames")
    framed = tokens.reshape(*lead, t // cfg.frame_len, cfg.frame_len)
    if (framed[..., 0] != cfg.start_token).any() or (framed[..., -1] != cfg.end_token).any():
        raise NcalabError("frame delimiters are not where the layout puts them")
    return patch_tokens_to_grids(framed[..., 1:-1], cfg)


def loss_mask(cfg: NCAConfig) -> np.ndarray:
    """(L,) bool over targets: False for targets inside the first min_grid frames."""
    target_pos = np.arange(1, cfg.seq_len + 1)  # position in the sequence of each target
    return target_pos >= cfg.min_grid * cfg.frame_len


def make_example(seq: np.ndarray, cfg: NCAConfig) -> tuple[np.ndarray, np.ndarray]:
    """(L + 1,) sequence -> (input_ids, labels) with IGNORE_INDEX where the loss is masked."""
    seq = np.asarray(seq, dtype=np.int64)
    inputs = seq[..., :-1].copy()
    labels = seq[..., 1:].copy()
    labels[..., ~loss_mask(cfg)] = IGNORE_INDEX
    return inputs, labels
