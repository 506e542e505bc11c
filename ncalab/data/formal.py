"""Formal languages of Hu, Petty, Shi, Merrill and Linzen 2025, "Between Circuits and Chomsky"
(docs/method.md has their code, file and line), beside ncalab's Dyck streams (ncalab.data.dyck):

  ww          the copy language {ww}, outside the context-free languages: a word w of uniform
              length in [min_length, max_length] over `symbols` uniform symbols, then w again;
              such pairs follow one another up to the sequence length (the last may be cut).
  hu shuffle  their k-shuffle-Dyck: one walk of k bracket types (opening t, closing k + t).
              At depth 0 it opens; at depth_max it closes; otherwise it opens with p_open. An
              opening's type is uniform; a closing closes a type drawn uniformly among the
              types that are open (not among the open brackets, as ncalab's shuffle-Dyck does).

Sequence i of a split is a pure function of (seed, split, i), like the Dyck streams.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numba import njit, uint64

from ncalab.data.dyck import GOLDEN, mix64, sequence_keys
from ncalab.errors import NcalabError

_TAG_WW = np.uint64(0x57572121)  # "WW!!"
_TAG_HU = np.uint64(0x48554459)  # "HUDY"
_S32 = np.uint64(32)
_MASK32 = np.uint64(0xFFFFFFFF)
_ONE32 = 1 << 32


@dataclass
class WWSettings:
    """The `ww` source's settings (config section `ww`); the defaults are Hu et al.'s."""

    symbols: int = 64  # the alphabet: token ids 0..symbols-1
    min_length: int = 10  # |w| is uniform in [min_length, max_length]
    max_length: int = 510

    @property
    def vocab_size(self) -> int:
        return self.symbols

    def validate(self, seq_len: int) -> None:
        if not 1 <= self.symbols <= 1 << 20:
            raise ValueError(f"symbols must be in [1, {1 << 20}], got {self.symbols}")
        if not 1 <= self.min_length <= self.max_length:
            raise ValueError(f"need 1 <= min_length <= max_length, got {self.min_length} and {self.max_length}")


def ww_sequences(s: WWSettings, seed: int, split: str, start: int, count: int, length: int) -> np.ndarray:
    """(count, length) int64 tokens of the copy language."""
    s.validate(length - 1)
    keys = sequence_keys(seed, split, start, count).astype(np.uint64)
    return _ww(keys, length, s.symbols, s.min_length, s.max_length)


def hu_shuffle_dyck(pairs: int, depth_max: int, p_open: float, seed: int, split: str, start: int, count: int,
                    length: int) -> np.ndarray:
    """(count, length) int64 tokens of Hu et al.'s k-shuffle-Dyck walk (k = pairs)."""
    if pairs < 1 or depth_max < 1 or not 0 < p_open < 1:
        raise NcalabError(f"k-shuffle-Dyck needs pairs >= 1, depth_max >= 1 and p_open in (0, 1), "
                          f"got {pairs}, {depth_max}, {p_open}")
    keys = sequence_keys(seed, split, start, count).astype(np.uint64)
    threshold = np.uint64(min(_ONE32, round(p_open * _ONE32)))
    return _hu(keys, length, pairs, depth_max, threshold)


@njit(cache=True)
def _ww(keys, length, symbols, min_length, max_length):
    out = np.empty((keys.shape[0], length), dtype=np.int64)
    span = uint64(max_length - min_length + 1)
    k = uint64(symbols)
    for b in range(keys.shape[0]):
        state = mix64(keys[b] ^ _TAG_WW)
        n = uint64(0)  # draws taken
        pos = 0
        while pos < length:
            x = mix64(state + n * GOLDEN)
            n += uint64(1)
            size = min_length + np.int64(((x >> _S32) * span) >> _S32)
            for j in range(size):  # w; its copy follows
                if pos + j >= length:
                    break
                y = mix64(state + n * GOLDEN)
                n += uint64(1)
                out[b, pos + j] = np.int64(((y & _MASK32) * k) >> _S32)
            for j in range(size):
                if pos + size + j >= length:
                    break
                out[b, pos + size + j] = out[b, pos + j]
            pos += 2 * size
    return out


@njit(cache=True)
def _hu(keys, length, pairs, depth_max, open_thr):
    out = np.empty((keys.shape[0], length), dtype=np.int64)
    counts = np.zeros(pairs, dtype=np.int64)
    open_types = np.empty(pairs, dtype=np.int64)  # the types with a count > 0, in any order
    where = np.empty(pairs, dtype=np.int64)  # a type's index in open_types
    k = uint64(pairs)
    for b in range(keys.shape[0]):
        state = mix64(keys[b] ^ _TAG_HU)
        counts[:] = 0
        n_open = 0
        depth = 0
        for t in range(length):
            x = mix64(state + uint64(t) * GOLDEN)
            lo = x & _MASK32
            opening = depth == 0 or (depth < depth_max and (x >> _S32) < open_thr)
            if opening:
                kind = np.int64((lo * k) >> _S32)
                if counts[kind] == 0:
                    where[kind] = n_open
                    open_types[n_open] = kind
                    n_open += 1
                counts[kind] += 1
                depth += 1
                out[b, t] = kind
            else:
                kind = open_types[np.int64((lo * uint64(n_open)) >> _S32)]
                counts[kind] -= 1
                depth -= 1
                out[b, t] = kind + pairs
                if counts[kind] == 0:  # the last open type fills its place
                    last = open_types[n_open - 1]
                    open_types[where[kind]] = last
                    where[last] = where[kind]
                    n_open -= 1
    return out
