"""Dyck and shuffle-Dyck token streams: the synthetic controls of NCA pre-pre-training.

Tokens: with k bracket pairs (`pairs`), opening brackets are ids 0..k-1 and the closing bracket
of type t is k + t, so the vocabulary has 2k ids.

A sequence is a concatenation of words, cut off at the sequence length (the last word may be
incomplete). Every word is one top-level bracket pair with its contents, i.e. a Dyck word that
returns to depth 0 only at its end; the next word starts right after it. A word is made as
follows (depth = number of open brackets):

1. Draw its depth D uniformly from [depth_min, depth_max]: the word's maximum depth is exactly D.
2. Climb. Open the first bracket, then, until depth D is first reached, open with probability
   c(d) = p h(d+1) / h(d), else close, where h(d) = 1 - r**d, r = (1 - p) / p (h(d) = d when
   p = 1/2) and p = p_open. This is the depth-d walk below conditioned on reaching D before
   depth 0 (Doob's h-transform; c(1) = 1, and c(d) does not depend on D): every word reaches
   its drawn depth, with the same law as a word of the plain walk that happens to reach D.
3. Wander. Once D is reached: at depth D close; at 0 < d < D open with probability p_open, else
   close. The word ends the first time depth returns to 0.

The type of every opening bracket is uniform over the k types. Closing differs by variant:
  dyck          the innermost open bracket closes (words are properly nested);
  shuffle_dyck  a uniformly chosen open bracket closes (with multiplicity), so each type is
                balanced on its own and pairs cross (cross-serial dependencies).
Defaults: k = 64, D in 1..16, p_open = 0.5 (the climb then opens with probability (d+1)/(2d)).

Randomness is counter-based: the token at position t of a sequence uses one draw,
splitmix64(key, t); its high 32 bits decide open/close (or D, at a word's first token) and its
low 32 bits pick the bracket. The key of sequence i of split s is `rule_seeds(seed, s, i)`, the
63-bit bijection of base(seed) + 2i + split_id (ncalab.nca.seeds): a sequence is a pure function
of (seed, split, i), whichever batch or process makes it, and train and val keys never coincide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numba import njit, uint64

from ncalab.errors import NcalabError
from ncalab.nca.seeds import SPLITS, rule_seeds

MAX_PAIRS = 1 << 20  # bracket picks use 32-bit multiply-shift; no LM here wants a larger vocabulary

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_TAG = np.uint64(0x44594348)  # "DYCH": keeps these draws apart from the NCA rules of the same seed
_MASK32 = np.uint64(0xFFFFFFFF)
_S27 = np.uint64(27)
_S30 = np.uint64(30)
_S31 = np.uint64(31)
_S32 = np.uint64(32)
_ONE32 = 1 << 32


@dataclass(frozen=True)
class DyckConfig:
    """A Dyck (or, with shuffle=True, shuffle-Dyck) language and its word-generation process."""

    pairs: int = 64
    depth_min: int = 1
    depth_max: int = 16
    p_open: float = 0.5
    shuffle: bool = False

    @property
    def vocab_size(self) -> int:
        return 2 * self.pairs

    def validate(self, seq_len: int | None = None) -> None:
        """Raise NcalabError (one line) for a config that cannot make sequences of seq_len + 1 tokens."""
        if not 1 <= self.pairs <= MAX_PAIRS:
            raise NcalabError(f"dyck pairs must be in [1, {MAX_PAIRS}], got {self.pairs}")
        if self.depth_min < 1:
            raise NcalabError(f"dyck depth_min must be at least 1, got {self.depth_min}")
        if self.depth_min > self.depth_max:
            raise NcalabError(f"dyck depth_min ({self.depth_min}) is above depth_max ({self.depth_max})")
        if not 0.0 < self.p_open < 1.0:
            raise NcalabError(f"dyck p_open must be strictly between 0 and 1, got {self.p_open}")
        if seq_len is not None and 2 * self.depth_min > seq_len + 1:
            raise NcalabError(f"dyck words of depth {self.depth_min} need {2 * self.depth_min} tokens, more than "
                              f"a sequence holds (seq_len + 1 = {seq_len + 1}); lower depth_min")


def climb_open_probability(p_open: float, depth: int) -> float:
    """P(open) at `depth` >= 1 while a word climbs to its depth: p h(d+1)/h(d), h(d) = 1 - r**d."""
    r = (1.0 - p_open) / p_open
    if r == 1.0:
        ratio = (depth + 1) / depth
    elif r < 1.0:
        ratio = math.expm1((depth + 1) * math.log(r)) / math.expm1(depth * math.log(r))
    else:  # h(d) = r**d (1 - r**-d): factor out r**d so large r cannot overflow
        s = math.log(1.0 / r)
        ratio = r * math.expm1((depth + 1) * s) / math.expm1(depth * s)
    return min(1.0, p_open * ratio)


def _threshold(p: float) -> np.uint64:
    """A 32-bit draw is below this with probability p (to within 2**-33)."""
    return np.uint64(min(_ONE32, max(0, round(p * _ONE32))))


def _climb_thresholds(cfg: DyckConfig) -> np.ndarray:
    table = np.zeros(cfg.depth_max + 1, dtype=np.uint64)  # index = depth; 0 is never read
    for d in range(1, cfg.depth_max + 1):
        table[d] = _threshold(climb_open_probability(cfg.p_open, d))
    return table


def sequence_keys(seed: int, split: str, start: int, count: int) -> np.ndarray:
    """Keys (int64) of sequences start .. start+count-1 of a split; distinct across splits and indices."""
    if split not in SPLITS:
        raise NcalabError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if start < 0 or count < 0:
        raise NcalabError(f"sequence indices must be non-negative, got start={start}, count={count}")
    return rule_seeds(seed, split, start, count)


def dyck_sequences(cfg: DyckConfig, seed: int, split: str, start: int, count: int, length: int) -> np.ndarray:
    """(count, length) int64 tokens: sequences start .. start+count-1 of `split` of stream `seed`."""
    cfg.validate()
    if length < 1:
        raise NcalabError(f"dyck sequence length must be positive, got {length}")
    keys = sequence_keys(seed, split, start, count).astype(np.uint64)
    return _generate(keys, length, cfg.pairs, cfg.depth_min, cfg.depth_max,
                     _threshold(cfg.p_open), _climb_thresholds(cfg), cfg.shuffle)


def is_valid_prefix(tokens: np.ndarray, cfg: DyckConfig) -> bool:
    """Whether a 1-D token sequence is a prefix of a stream of the language: ids in [0, 2k), every
    closing bracket matches (Dyck: the innermost open one; shuffle: some open one of its type) and
    depth never exceeds depth_max. A stream may return to depth 0 and start a new word."""
    row = _as_rows(tokens)
    if row.shape[0] != 1:
        raise NcalabError(f"is_valid_prefix takes one sequence, got shape {np.shape(tokens)}")
    return bool(_first_invalid(row, cfg.pairs, cfg.depth_max, cfg.shuffle)[0] == row.shape[1])


def continuation_validity(prefix_tokens: np.ndarray, predicted: np.ndarray, cfg: DyckConfig) -> np.ndarray:
    """Conditional validity: out[b, t] is whether prefix[b, :t+1] followed by predicted[b, t] is a
    valid prefix (any opening bracket below depth_max, or a closing bracket that matches).

    Shapes (B, T) or (T,), as int arrays; the output has the same shape. Where the prefix itself
    is already invalid, no continuation is valid (False from that position on)."""
    prefix, pred = _as_rows(prefix_tokens), _as_rows(predicted)
    if prefix.shape != pred.shape:
        raise NcalabError(f"prefix {np.shape(prefix_tokens)} and predictions {np.shape(predicted)} differ in shape")
    out = _continuations(prefix, pred, cfg.pairs, cfg.depth_max, cfg.shuffle)
    return out.reshape(np.shape(prefix_tokens))


def _as_rows(tokens: np.ndarray) -> np.ndarray:
    arr = np.asarray(tokens)
    if arr.ndim not in (1, 2):
        raise NcalabError(f"token arrays must be 1-D or 2-D, got shape {arr.shape}")
    return np.ascontiguousarray(arr.reshape(-1, arr.shape[-1]) if arr.ndim == 2 else arr[None], dtype=np.int64)


@njit(inline="always")
def _mix64(z):
    """splitmix64's output step (with its increment): draw n of a stream is _mix64(state + n*GOLDEN)."""
    z = z + _GOLDEN
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


mix64 = _mix64  # the counter-based draws the other synthetic sources (ncalab.data.eca, .formal) share
GOLDEN = _GOLDEN


@njit(cache=True)
def _generate(keys, length, pairs, depth_min, depth_max, open_thr, climb_thr, shuffle):
    out = np.empty((keys.shape[0], length), dtype=np.int64)
    stack = np.empty(depth_max, dtype=np.int64)  # open bracket types; order matters only for Dyck
    span = uint64(depth_max - depth_min + 1)
    k = uint64(pairs)
    for b in range(keys.shape[0]):
        state = _mix64(keys[b] ^ _TAG)
        depth = 0
        target = 0
        climbing = False
        for t in range(length):
            x = _mix64(state + uint64(t) * _GOLDEN)
            hi = x >> _S32
            lo = x & _MASK32
            if depth == 0:  # a new word: its first draw's high bits pick its depth
                target = depth_min + np.int64((hi * span) >> _S32)
                climbing = True
                opening = True
            elif climbing:
                opening = hi < climb_thr[depth]
            elif depth == target:
                opening = False
            else:
                opening = hi < open_thr
            if opening:
                kind = np.int64((lo * k) >> _S32)
                stack[depth] = kind
                depth += 1
                out[b, t] = kind
                if depth == target:
                    climbing = False
            else:
                j = np.int64((lo * uint64(depth)) >> _S32) if shuffle else depth - 1
                out[b, t] = stack[j] + pairs
                stack[j] = stack[depth - 1]  # shuffle: the last open bracket fills the gap
                depth -= 1
    return out


@njit(inline="always")
def _open_slot(tok, stack, depth, pairs, depth_max, shuffle):
    """Where `tok` may go on the stack: depth for an opening, the index of the open bracket it
    closes, or -1 if it is not allowed here."""
    if tok < 0 or tok >= 2 * pairs:
        return -1
    if tok < pairs:
        return depth if depth < depth_max else -1
    kind = tok - pairs
    if not shuffle:
        return depth - 1 if depth > 0 and stack[depth - 1] == kind else -1
    for j in range(depth - 1, -1, -1):
        if stack[j] == kind:
            return j
    return -1


@njit(inline="always")
def _apply(tok, slot, stack, depth, pairs):
    """Push or pop `tok` at `slot` (from _open_slot); returns the new depth."""
    if tok < pairs:
        stack[depth] = tok
        return depth + 1
    stack[slot] = stack[depth - 1]  # keeps Dyck order: there slot == depth - 1
    return depth - 1


@njit(cache=True)
def _first_invalid(rows, pairs, depth_max, shuffle):
    first = np.full(rows.shape[0], rows.shape[1], dtype=np.int64)
    stack = np.empty(depth_max, dtype=np.int64)
    for b in range(rows.shape[0]):
        depth = 0
        for t in range(rows.shape[1]):
            slot = _open_slot(rows[b, t], stack, depth, pairs, depth_max, shuffle)
            if slot < 0:
                first[b] = t
                break
            depth = _apply(rows[b, t], slot, stack, depth, pairs)
    return first


@njit(cache=True)
def _continuations(prefix, pred, pairs, depth_max, shuffle):
    ok = np.zeros(prefix.shape, dtype=np.bool_)
    stack = np.empty(depth_max, dtype=np.int64)
    for b in range(prefix.shape[0]):
        depth = 0
        for t in range(prefix.shape[1]):
            slot = _open_slot(prefix[b, t], stack, depth, pairs, depth_max, shuffle)
            if slot < 0:
                break
            depth = _apply(prefix[b, t], slot, stack, depth, pairs)
            ok[b, t] = _open_slot(pred[b, t], stack, depth, pairs, depth_max, shuffle) >= 0
    return ok
