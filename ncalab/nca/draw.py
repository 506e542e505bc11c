"""Rules drawn from a random stream one at a time, in order, with the band test's score, and
one rule's rollout: what Explore shows, what the report's strip draws and what stage 1 keeps of
the rules it trained on (the same rules, because training's filter scores them the same way)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

import numpy as np

from ncalab.errors import NcalabError
from ncalab.nca.analysis import trajectory_stats
from ncalab.nca.bands import Band
from ncalab.nca.complexity import score_tokens
from ncalab.nca.config import NCAConfig
from ncalab.nca.engine import RuleBatch
from ncalab.nca.seeds import rule_seeds
from ncalab.nca.stream import patch_tokens, score_window


@dataclass
class Rollout:
    rule_seed: int
    sim_seed: int
    cfg: NCAConfig
    frames: np.ndarray  # (F, H, W) u8, the first after the burn-in
    score: float  # gzip score of the first score_frames frames (nan when fewer were recorded)
    stats: dict[str, float]

    def to_dict(self, with_frames: bool = True) -> dict:
        d = {
            "rule_seed": self.rule_seed, "sim_seed": self.sim_seed, "config": self.cfg.to_dict(),
            "score": None if np.isnan(self.score) else self.score, "stats": self.stats,
        }
        if with_frames:
            d["frames"] = self.frames.tolist()
        return d


def check_seed(name: str, seed: int) -> None:
    if not 0 <= seed < 2**63:
        raise NcalabError(f"{name} must be between 0 and 2**63-1, got {seed}")


def sample_rollout(rule_seed: int, cfg: NCAConfig, frames: int, sim_seed: int | None = None) -> Rollout:
    """Simulate one rule for ``frames`` recorded frames (after the burn-in)."""
    if frames < 1:
        raise NcalabError(f"--steps must be positive, got {frames}")
    sim_seed = rule_seed if sim_seed is None else sim_seed
    check_seed("seed", rule_seed)
    check_seed("sim seed", sim_seed)
    rb = RuleBatch([rule_seed], [sim_seed], cfg)
    grids = rb.frames(frames)
    toks = patch_tokens(grids, cfg)
    score = float(score_tokens(toks[:, : cfg.score_frames])[0]) if frames >= cfg.score_frames else float("nan")
    stats = {k: float(v[0]) for k, v in trajectory_stats(grids, toks, cfg).items()}
    return Rollout(rule_seed, sim_seed, cfg, grids[0], score, stats)



def rule_score(rule_seed: int, cfg: NCAConfig) -> float:
    """A rule's gzip score as the band test takes it: its first score_frames recorded frames
    after the burn-in, from the initial state of the same seed (what training filters on)."""
    check_seed("seed", rule_seed)
    return float(score_window(RuleBatch([rule_seed], [rule_seed], cfg).frames(cfg.score_frames), cfg)[0])


@dataclass(frozen=True)
class Drawn:
    rule_seed: int
    score: float  # the band test's score (see rule_score)
    in_band: bool


class RuleDraw:
    """Rules of one random stream, taken in order, one at a time: the next one in the band, or
    the next one whatever it scores.

    Candidate i is rule ``rule_seeds(stream, "train", i)``, scored exactly as training's
    ``FilteredSource`` scores it, so "in band" here means what it means for stage 1. Every
    candidate scored is counted, so the band's share of random rules is known as it goes.
    """

    def __init__(self, cfg: NCAConfig, band: Band, stream: int, batch_rules: int | None = None):
        check_seed("stream seed", stream)
        self.cfg, self.band, self.stream = cfg, band, stream
        # about 40k cells a batch: a few hundredths of a second at 12x12, the same work at 64x64
        self.batch_rules = batch_rules or max(8, min(256, 40_000 // (cfg.height * cfg.width)))
        self.scores: list[float] = []  # of every candidate scored, in stream order
        self._waiting: deque[Drawn] = deque()  # scored, not yet handed out

    @property
    def scored(self) -> int:
        return len(self.scores)

    @property
    def in_band_count(self) -> int:
        return int(self.band.contains(np.asarray(self.scores)).sum()) if self.scores else 0

    def score_more(self, n: int | None = None) -> None:
        """Score the next n candidates (a batch by default)."""
        seeds = rule_seeds(self.stream, "train", self.scored, n or self.batch_rules)
        scores = score_window(RuleBatch(seeds, seeds, self.cfg).frames(self.cfg.score_frames), self.cfg)
        inside = self.band.contains(scores)
        self.scores.extend(scores.tolist())
        self._waiting.extend(Drawn(int(s), float(v), bool(i)) for s, v, i in zip(seeds, scores, inside))

    def next(self, in_band: bool = True, max_candidates: int = 4096) -> Drawn:
        """The next candidate (in the band, or any); after ``max_candidates`` without one in
        the band, a one-line error says the settings do not reach it."""
        looked = 0
        while True:
            while self._waiting:
                d = self._waiting.popleft()
                looked += 1
                if d.in_band or not in_band:
                    return d
            if looked >= max_candidates:
                best = max(self.scores[-looked:])
                raise NcalabError(f"none of {looked:,} random rules with these settings scores in {self.band.label()} "
                                  f"(highest {best:.3f}); change the settings or draw any rule")
            self.score_more()
