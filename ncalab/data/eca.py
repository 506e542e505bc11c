"""Elementary cellular automata (ECA) as token sequences: the source of Zhang et al. 2025,
"Intelligence at the Edge of Chaos" (docs/method.md has the paper's code, file and line).

An ECA is a ring of binary cells; at each step a cell becomes bit n of the rule number, where
n = 4 left + 2 centre + right (Wolfram's numbering, as the paper's code). As in the paper, a
sequence is a window of consecutive rows (every `interval`-th step, from a start time drawn
uniformly) of `width` cells cut at a random column of a `world`-cell automaton started from
uniform random cells. The paper feeds each row to the model as one vector; a language model
reads tokens, so each row is written as width / patch tokens, each the binary number of
`patch` adjacent cells (the first cell the highest bit): 2**patch token ids.

Sequence i of a split is a pure function of (seed, split, i), like the Dyck streams: its draws
are splitmix64 of its key (ncalab.nca.seeds.rule_seeds) and a counter.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from numba import njit, uint64

from ncalab.data.dyck import GOLDEN, mix64, sequence_keys

BOUNDARIES = ("periodic", "fixed")
# Wolfram's classes of the 88 rules that are not equivalent under reflection and complement
# (Wolfram 2002; the grouping the paper samples its rules from): 1 uniform, 2 periodic,
# 3 chaotic, 4 complex.
WOLFRAM_CLASSES = {
    1: (0, 8, 32, 40, 128, 136, 160, 168),
    2: (1, 2, 3, 4, 5, 6, 7, 9, 10, 11, 12, 13, 14, 15, 19, 23, 24, 25, 26, 27, 28, 29, 33, 34, 35, 36, 37, 38,
        42, 43, 44, 46, 50, 51, 56, 57, 58, 62, 72, 73, 74, 76, 77, 78, 94, 104, 108, 130, 132, 134, 138, 140,
        142, 152, 154, 156, 162, 164, 170, 172, 178, 184, 200, 204, 232),
    3: (18, 22, 30, 45, 60, 90, 105, 122, 126, 146, 150),
    4: (41, 54, 106, 110),
}
_TAG = np.uint64(0x45434121)  # "ECA!": keeps these draws apart from the other sources of a seed
_S32 = np.uint64(32)
_MASK32 = np.uint64(0xFFFFFFFF)


@dataclass
class ECASettings:
    """The `eca` source's settings (config section `eca`)."""

    rules: list[int] = field(default_factory=list)  # rule numbers 0-255, one drawn per sequence; [] = rule_class
    rule_class: int = 4  # Wolfram class 1-4 whose rules are drawn when `rules` is empty
    width: int = 100  # cells of a row in the sequence (the paper's sample_width)
    world: int = 1000  # cells of the simulated automaton (the paper's --width)
    steps: int = 1000  # steps simulated: a sequence starts at a uniform time that leaves room for its rows
    interval: int = 1  # steps between consecutive rows (the paper's k)
    boundary: str = "periodic"  # one of BOUNDARIES: a ring (the paper), or cells beyond the world are 0
    patch: int = 5  # cells per token: 2**patch token ids

    def rule_set(self) -> np.ndarray:
        return np.array(self.rules or WOLFRAM_CLASSES.get(self.rule_class, ()), dtype=np.int64)

    def tokens_per_row(self) -> int:
        return self.width // self.patch

    def rows(self, length: int) -> int:
        """Rows a sequence of `length` tokens spans (the last one may be cut)."""
        return -(-length // self.tokens_per_row())

    def validate(self, seq_len: int) -> None:
        """One line (ValueError) for settings that cannot make sequences of seq_len + 1 tokens."""
        if not self.rules and self.rule_class not in WOLFRAM_CLASSES:
            raise ValueError(f"rule_class must be 1, 2, 3 or 4, got {self.rule_class}")
        bad = [r for r in self.rules if not 0 <= r <= 255]
        if bad:
            raise ValueError(f"rules are numbers 0-255, got {bad[0]}")
        if self.boundary not in BOUNDARIES:
            raise ValueError(f"boundary must be one of {', '.join(BOUNDARIES)}, got {self.boundary!r}")
        if not 1 <= self.patch <= 16 or self.width < self.patch or self.width % self.patch:
            raise ValueError(f"patch must be 1-16 and divide width; got patch {self.patch}, width {self.width}")
        if self.world < self.width or self.interval < 1:
            raise ValueError(f"world ({self.world}) must hold a row of width {self.width}, and interval be >= 1")
        need = (self.rows(seq_len + 1) - 1) * self.interval
        if self.steps < need:
            raise ValueError(f"a sequence of {seq_len + 1} tokens spans {need} steps, more than steps={self.steps}")

    @property
    def vocab_size(self) -> int:
        return 1 << self.patch


def eca_sequences(s: ECASettings, seed: int, split: str, start: int, count: int, length: int) -> np.ndarray:
    """(count, length) int64 tokens: sequences start .. start+count-1 of `split` of stream `seed`."""
    s.validate(length - 1)
    keys = sequence_keys(seed, split, start, count).astype(np.uint64)
    return _generate(keys, s.rule_set(), length, s.width, s.world, s.steps, s.interval,
                     s.boundary == "periodic", s.patch)


def sequence_rules(s: ECASettings, seed: int, split: str, start: int, count: int) -> np.ndarray:
    """The rule each of those sequences follows (for statistics and tests)."""
    keys = sequence_keys(seed, split, start, count).astype(np.uint64)
    return _rules_of(keys, s.rule_set())


def evolve(rule: int, row: np.ndarray, steps: int, periodic: bool = True) -> np.ndarray:
    """(steps + 1, len(row)) cells of the automaton `rule` from `row` (a reference in numpy)."""
    rows = [np.asarray(row, dtype=np.uint8)]
    table = np.array([(rule >> n) & 1 for n in range(8)], dtype=np.uint8)
    for _ in range(steps):
        cur = rows[-1]
        left, right = np.roll(cur, 1), np.roll(cur, -1)
        if not periodic:
            left[0] = right[-1] = 0
        rows.append(table[4 * left + 2 * cur + right])
    return np.stack(rows)


def decode_rows(tokens: np.ndarray, s: ECASettings) -> np.ndarray:
    """The cells (rows, width) a sequence's whole rows show: the space-time picture of a sequence."""
    per_row = s.tokens_per_row()
    whole = (len(tokens) // per_row) * per_row
    shifts = np.arange(s.patch - 1, -1, -1)
    bits = (np.asarray(tokens[:whole])[:, None] >> shifts) & 1
    return bits.reshape(-1, s.width).astype(np.uint8)


@njit(cache=True)
def _rules_of(keys, rule_set):
    out = np.empty(keys.shape[0], dtype=np.int64)
    for b in range(keys.shape[0]):
        x = mix64(mix64(keys[b] ^ _TAG))
        out[b] = rule_set[np.int64(((x >> _S32) * uint64(rule_set.shape[0])) >> _S32)]
    return out


@njit(cache=True)
def _generate(keys, rule_set, length, width, world, steps, interval, periodic, patch):
    out = np.empty((keys.shape[0], length), dtype=np.int64)
    cur = np.empty(world, dtype=np.uint8)
    nxt = np.empty(world, dtype=np.uint8)
    per_row = width // patch
    span = (-(-length // per_row) - 1) * interval  # steps between the first row and the last
    for b in range(keys.shape[0]):
        state = mix64(keys[b] ^ _TAG)
        first = mix64(state)  # its high bits pick the rule (as _rules_of), its low bits the column
        rule = rule_set[np.int64(((first >> _S32) * uint64(rule_set.shape[0])) >> _S32)]
        offset = np.int64(((first & _MASK32) * uint64(world - width + 1)) >> _S32)
        starts = (steps - span) // interval + 1  # start times 0, interval, 2 interval, ...
        t0 = interval * np.int64(((mix64(state + GOLDEN) >> _S32) * uint64(starts)) >> _S32)
        for j in range(world):  # uniform random cells, 64 a draw
            x = mix64(state + uint64(2 + j // 64) * GOLDEN)
            cur[j] = np.uint8((x >> uint64(j % 64)) & uint64(1))
        pos = 0
        t = 0
        while pos < length:
            if t >= t0 and (t - t0) % interval == 0:
                pos = _emit(cur, out[b], pos, offset, per_row, patch)
            if pos < length:
                _step(cur, nxt, rule, periodic)
                cur, nxt = nxt, cur
                t += 1
    return out


@njit(inline="always")
def _emit(cur, row_out, pos, offset, per_row, patch):
    """Write one row's tokens from column `offset` on; returns the next position."""
    for c in range(per_row):
        if pos >= row_out.shape[0]:
            break
        v = 0
        base = offset + c * patch
        for q in range(patch):
            v = 2 * v + np.int64(cur[base + q])
        row_out[pos] = v
        pos += 1
    return pos


@njit(inline="always")
def _step(cur, nxt, rule, periodic):
    n = cur.shape[0]
    left_edge = cur[n - 1] if periodic else np.uint8(0)
    right_edge = cur[0] if periodic else np.uint8(0)
    for i in range(n):
        left = cur[i - 1] if i > 0 else left_edge
        right = cur[i + 1] if i < n - 1 else right_edge
        nxt[i] = np.uint8((rule >> (4 * np.int64(left) + 2 * np.int64(cur[i]) + np.int64(right))) & 1)
