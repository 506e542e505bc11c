"""Exploring rules: one rollout with its statistics, complexity surveys of many rules, and
rules drawn one at a time from a complexity band (the TUI's Explore and Families screens)."""

from __future__ import annotations

import numpy as np

from ncalab.errors import NcalabError
from ncalab.nca.analysis import trajectory_stats
from ncalab.nca.bands import bin_fractions
from ncalab.nca.complexity import score_tokens
from ncalab.nca.config import NCAConfig
from ncalab.nca.draw import Drawn, Rollout, RuleDraw, rule_score, sample_rollout  # noqa: F401 (the front ends' names)
from ncalab.nca.engine import RuleBatch
from ncalab.nca.seeds import rule_seeds
from ncalab.nca.stream import patch_tokens, score_window


def window_stats(frames: list[np.ndarray], cfg: NCAConfig) -> dict[str, float]:
    """The gzip score and the other statistics of a run of recorded (H, W) frames (Explore's
    rolling window): the same score the band test gives its first score_frames frames."""
    grids = np.stack(frames)[None]
    toks = patch_tokens(grids, cfg)
    out = {k: float(v[0]) for k, v in trajectory_stats(grids, toks, cfg).items()}
    out["score"] = float(score_tokens(toks)[0])
    return out


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


def start_rule(seed: int, cfg: NCAConfig) -> RuleBatch:
    """Rule `seed` running alone, at its first recorded frame (after the burn-in): Explore's live view."""
    batch = RuleBatch([seed], [seed], cfg)
    batch.frames(1)
    return batch


def band_rules(cfg: NCAConfig, band, stream: int, shown: int, survey: int) -> tuple[RuleBatch | None, np.ndarray, int]:
    """Families' gallery: `survey` rules of random stream `stream` scored (the histogram), and the
    first `shown` of them in `band` running side by side at their first recorded frame. Returns
    (the running batch, None when none is in the band; every surveyed score; how many run)."""
    rules = RuleDraw(cfg, band, stream)
    rules.score_more(survey)
    inside: list = []
    while len(inside) < min(shown, rules.in_band_count):
        inside.append(rules.next().rule_seed)
    batch = RuleBatch(inside, inside, cfg) if inside else None
    if batch is not None:
        batch.frames(1)
    return batch, np.asarray(rules.scores), len(inside)
