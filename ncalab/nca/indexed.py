"""An addressable NCA stream: training sequence g of a split is a pure function of
(stream seed, split, g), whatever process, rank or batch asks for it.

The filtered stream of ncalab.nca.stream hands out accepted sequences in the order the
candidate batches produce them, so sequence g depends on every batch before it. Here the
accepted rules are counted in fixed chunks instead: chunk c draws candidates only from its
own range of rule counters ([c * SPAN, (c + 1) * SPAN), in rounds of `candidates`) until it
has `chunk_rules` rules in band, so accepted rule q is rule q % chunk_rules of chunk
q // chunk_rules, computable on its own. Ranks of a distributed run take disjoint ranges
of sequence indices and generate only their own chunks; a resumed run continues from one
integer, even with another number of ranks.

With sims_per_rule S, sequences come in blocks of `block_rules` rules x S trajectories,
trajectory-major: sequence g is trajectory s of rule q with
    k, r = divmod(g, block_rules * S);  s, i = divmod(r, block_rules);  q = k * block_rules + i,
so consecutive sequences are different rules (as with the paper's shuffled rule bank).
With block_rules as large as the stage's rule bank, a rule recurs once a pass over the bank,
as in the paper's epochs (stage1.reuse = spread). Trajectory 0 is the one the rule was scored
on; with nca.fresh_trajectories, training uses trajectories 1..S instead.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np

from ncalab.errors import NcalabError
from ncalab.nca.bands import Band
from ncalab.nca.config import NCAConfig
from ncalab.nca.engine import RuleBatch
from ncalab.nca.seeds import rule_seeds, sim_seeds
from ncalab.nca.stream import NO_RULE_LIMIT, frames_to_sequences, score_window

SPAN = 1 << 20  # rule counters reserved for each chunk


class IndexedNCAStream:
    def __init__(self, cfg: NCAConfig, band: Band | None, seed: int, split: str = "train", chunk_rules: int = 16,
                 candidates: int = 128, block_rules: int = 256):
        self.cfg, self.band, self.seed, self.split = cfg, band, int(seed), split
        self.chunk_rules, self.candidates, self.block_rules = chunk_rules, candidates, block_rules
        self.sims = int(cfg.sims_per_rule) if split == "train" else 1
        self._chunks: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()  # c -> (rule seeds, frames)

    def address(self, g: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(accepted-rule index q, trajectory s) of sequence indices g."""
        per_block = self.block_rules * self.sims
        k, r = np.divmod(np.asarray(g, dtype=np.int64), per_block)
        s, i = np.divmod(r, self.block_rules)
        return k * self.block_rules + i, s

    def sequences(self, start: int, count: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Sequences start .. start+count-1: (tokens (count, L + 1), rule seeds, sim seeds)."""
        cfg = self.cfg
        q, s = self.address(np.arange(start, start + count))
        chunk_ids = sorted(set((q // self.chunk_rules).tolist()))
        self._fill(chunk_ids)
        rules = np.array([self._chunks[c][0][p] for c, p in zip(q // self.chunk_rules, q % self.chunk_rules)],
                         dtype=np.int64)
        if cfg.fresh_trajectories:
            s = s + 1  # trajectory 0 is the scored one; the paper trains on fresh ones
        sims = sim_seeds(rules, s)
        frames = np.empty((count, cfg.frames_per_seq, cfg.cells), dtype=np.uint8)
        scored = s == 0  # the trajectory the rule was scored on is kept with its chunk
        for n, (c, p) in enumerate(zip(q // self.chunk_rules, q % self.chunk_rules)):
            if scored[n]:
                frames[n] = self._chunks[int(c)][1][p]
        if (~scored).any():
            rest = np.flatnonzero(~scored)
            frames[rest] = RuleBatch(rules[rest], sims[rest], cfg).frames(cfg.frames_per_seq).reshape(
                len(rest), cfg.frames_per_seq, cfg.cells)
        return frames_to_sequences(frames, cfg), rules, sims

    def _fill(self, chunk_ids: list[int]) -> None:
        """Find the accepted rules (and their scored trajectories) of the chunks not cached yet;
        every pending chunk's round of candidates is simulated in one batch."""
        cfg = self.cfg
        pending = [c for c in chunk_ids if c not in self._chunks]
        found: dict[int, list[tuple[int, np.ndarray]]] = {c: [] for c in pending}
        rnd = 0
        while pending:
            if rnd * self.candidates >= min(SPAN, NO_RULE_LIMIT) and not any(found[c] for c in pending):
                lo, hi = (self.band.lo, self.band.hi) if self.band else (0, 1)
                raise NcalabError(f"no rule scored in the band {lo}-{hi} among {rnd * self.candidates:,} candidates "
                                  f"with {cfg.alphabet} colours; choose a band these settings reach")
            if (rnd + 1) * self.candidates > SPAN:
                raise NcalabError("the band is too rare for an addressable stream; widen it")
            seeds = np.concatenate([rule_seeds(self.seed, self.split, c * SPAN + rnd * self.candidates, self.candidates)
                                    for c in pending])
            rb = RuleBatch(seeds, seeds, cfg)
            n_first = max(cfg.score_frames, 1)
            first = rb.frames(n_first).reshape(len(seeds), n_first, cfg.cells)
            scores = score_window(first, cfg)
            ok = self.band.contains(scores) if self.band is not None else np.ones(len(seeds), dtype=bool)
            take = []  # candidate positions that fill a chunk, in candidate order
            for j, c in enumerate(pending):
                need = self.chunk_rules - len(found[c])
                hits = np.flatnonzero(ok[j * self.candidates : (j + 1) * self.candidates])[:need]
                take += [(c, j * self.candidates + h) for h in hits]
            idx = np.array([t for _, t in take], dtype=np.int64)
            if cfg.fresh_trajectories:  # the scored trajectory is never trained on: keep its window only
                full = first[idx]
            else:
                rb.select(idx)
                rest = rb.frames(max(cfg.frames_per_seq - n_first, 0)).reshape(len(idx), -1, cfg.cells)
                full = np.concatenate([first[idx], rest], axis=1)[:, : cfg.frames_per_seq]
            for (c, t), fr in zip(take, full):
                found[c].append((int(seeds[t]), fr))
            pending = [c for c in pending if len(found[c]) < self.chunk_rules]
            rnd += 1
        for c, rules in found.items():
            self._chunks[c] = (np.array([r for r, _ in rules], dtype=np.int64), np.stack([f for _, f in rules]))
        while len(self._chunks) > 4096:  # a bounded cache: a block's chunks are asked for S times
            self._chunks.popitem(last=False)
