"""Exploring rules: one rollout with its statistics, and complexity surveys of many rules."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ncalab.errors import NcalabError
from ncalab.nca.analysis import trajectory_stats
from ncalab.nca.bands import bin_fractions
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


def _check_seed(name: str, seed: int) -> None:
    if not 0 <= seed < 2**63:
        raise NcalabError(f"{name} must be between 0 and 2**63-1, got {seed}")


def sample_rollout(rule_seed: int, cfg: NCAConfig, frames: int, sim_seed: int | None = None) -> Rollout:
    """Simulate one rule for ``frames`` recorded frames (after the burn-in)."""
    if frames < 1:
        raise NcalabError(f"--steps must be positive, got {frames}")
    sim_seed = rule_seed if sim_seed is None else sim_seed
    _check_seed("seed", rule_seed)
    _check_seed("sim seed", sim_seed)
    rb = RuleBatch([rule_seed], [sim_seed], cfg)
    grids = rb.frames(frames)
    toks = patch_tokens(grids, cfg)
    score = float(score_tokens(toks[:, : cfg.score_frames])[0]) if frames >= cfg.score_frames else float("nan")
    stats = {k: float(v[0]) for k, v in trajectory_stats(grids, toks, cfg).items()}
    return Rollout(rule_seed, sim_seed, cfg, grids[0], score, stats)


def score_rules(n_rules: int, seed: int, cfg: NCAConfig, batch: int = 4096) -> np.ndarray:
    """Scores of n random rules (the rules of stream ``seed``, training split)."""
    if n_rules <= 0:
        raise NcalabError(f"--rules must be positive, got {n_rules}")
    out = []
    for start in range(0, n_rules, batch):
        seeds = rule_seeds(seed, "train", start, min(batch, n_rules - start))
        rb = RuleBatch(seeds, seeds, cfg)
        out.append(score_window(rb.frames(cfg.score_frames), cfg))
    return np.concatenate(out)


def complexity_survey(n_rules: int, seed: int, cfg: NCAConfig) -> dict:
    scores = score_rules(n_rules, seed, cfg)
    return {
        "rules": int(n_rules), "seed": seed,
        "scores": [round(float(s), 6) for s in scores],
        "deciles": [float(x) for x in np.percentile(scores, np.arange(10, 100, 10))],
        "bands": bin_fractions(scores),
        "mean": float(scores.mean()),
    }

