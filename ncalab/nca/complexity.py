"""Complexity score (gzip ratio, spec section 4) and the other statistics of trajectories."""

from __future__ import annotations

import os
import zlib
from concurrent.futures import ThreadPoolExecutor

import numpy as np

GZIP_LEVEL = 9
_GZIP_WBITS = 31  # zlib container = gzip, with the standard 10-byte header and 8-byte trailer

_pool: ThreadPoolExecutor | None = None
_pool_pid = 0  # a forked child (DataLoader worker) inherits the pool object but not its threads


def gzip_ratio(patch_tokens: np.ndarray) -> float:
    """Compressed / raw length of the tokens written as little-endian int32 (the paper's score)."""
    raw = np.ascontiguousarray(patch_tokens, dtype="<i4").tobytes()
    return len(zlib.compress(raw, GZIP_LEVEL, _GZIP_WBITS)) / len(raw)


def _ratios(rows: np.ndarray) -> list[float]:
    # rows are contiguous little-endian int32 already: hand zlib the buffers, no copies
    raw = rows.shape[1] * 4
    return [len(zlib.compress(memoryview(r), GZIP_LEVEL, _GZIP_WBITS)) / raw for r in rows]


def _threads() -> int:
    return max(1, min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1))


def score_tokens(patch_tokens: np.ndarray, threads: int | None = None) -> np.ndarray:
    """Score each row of (B, ...) patch tokens (START/END already dropped).

    zlib releases the GIL while it compresses, so rows are split across threads.
    """
    global _pool, _pool_pid
    rows = np.ascontiguousarray(patch_tokens.reshape(patch_tokens.shape[0], -1), dtype="<i4")
    threads = threads or _threads()
    if threads == 1 or rows.shape[0] < 64:
        return np.asarray(_ratios(rows), dtype=np.float64)
    if _pool is None or _pool._max_workers != threads or _pool_pid != os.getpid():  # noqa: SLF001
        _pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="ncalab-gzip")
        _pool_pid = os.getpid()
    chunks = np.array_split(rows, threads)
    out: list[float] = []
    for part in _pool.map(_ratios, chunks):
        out.extend(part)
    return np.asarray(out, dtype=np.float64)


# --- other statistics --------------------------------------------------------------------


def _entropy_bits(counts: np.ndarray) -> np.ndarray:
    """Shannon entropy (bits) of each row of non-negative counts."""
    counts = counts.astype(np.float64)
    p = counts / np.maximum(counts.sum(axis=-1, keepdims=True), 1)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, -p * np.log2(p), 0.0)
    return terms.sum(axis=-1)


def cell_entropy(grids: np.ndarray, alphabet: int) -> np.ndarray:
    """(B, F, H, W) -> per trajectory, entropy (bits) of the colour distribution over all cells."""
    b = grids.shape[0]
    flat = grids.reshape(b, -1).astype(np.int64)
    counts = np.zeros((b, alphabet), dtype=np.int64)
    np.add.at(counts, (np.repeat(np.arange(b), flat.shape[1]), flat.reshape(-1)), 1)
    return _entropy_bits(counts)


def change_rate(grids: np.ndarray) -> np.ndarray:
    """(B, F, H, W) -> per trajectory, mean fraction of cells that change between frames."""
    if grids.shape[1] < 2:
        return np.zeros(grids.shape[0])
    return (grids[:, 1:] != grids[:, :-1]).mean(axis=(1, 2, 3))


def static_frame_fraction(grids: np.ndarray) -> np.ndarray:
    """(B, F, H, W) -> per trajectory, fraction of frames identical to the frame before."""
    if grids.shape[1] < 2:
        return np.zeros(grids.shape[0])
    return (grids[:, 1:] == grids[:, :-1]).all(axis=(2, 3)).mean(axis=1)


def distinct_tokens(tokens: np.ndarray) -> np.ndarray:
    """(B, T) -> number of distinct token ids per row."""
    s = np.sort(tokens, axis=1)
    return 1 + (s[:, 1:] != s[:, :-1]).sum(axis=1)


def unigram_entropy(tokens: np.ndarray) -> np.ndarray:
    """(B, T) -> entropy (bits) of each row's token frequency distribution."""
    out = np.empty(tokens.shape[0])
    for i, row in enumerate(tokens):
        _, counts = np.unique(row, return_counts=True)
        out[i] = _entropy_bits(counts)
    return out


def corpus_unigram_entropy(counts: np.ndarray) -> float:
    return float(_entropy_bits(counts))
