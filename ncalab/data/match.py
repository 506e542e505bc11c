"""How complex a language corpus is on the scale of the NCA bands, and which band suits it.

The NCA band test scores a rule by gzip: its first `score_frames` frames as patch tokens,
written as little-endian int32 and gzipped at level 9, compressed / raw length
(ncalab.nca.complexity.gzip_ratio). The corpus statistic is that same function on the corpus's
own token ids: the documents tokenised and joined by the end-of-text token, cut into windows of
as many tokens as the band test scores (score_frames x patches per frame: 360 at the defaults).
Same serialisation, same length, same compressor; only the tokens differ.

The two scales are not the same scale: a language corpus's score does not say which NCA
rules it "resembles". So the recommendation goes through calibration points instead: the
paper's three domains, whose bands the authors reported (code 0.3-0.4; web and math 0.5+),
measured here on a code, a web and a math corpus. A monotone map from the corpus statistic
to an NCA score runs through those points, and the recommended band is the studied band
(0.2-0.3, 0.3-0.4, 0.4-0.5, 0.5+) that holds the mapped score.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ncalab.errors import NcalabError
from ncalab.nca.bands import Band
from ncalab.nca.complexity import score_tokens

# Median corpus statistic of the paper's three domains. Measured 2026-12-03 on the 2-core
# development machine with `ncalab match --json` (a BPE of 4,096 tokens trained on each corpus,
# the tiny scale's vocabulary; the first 1,000 windows of 360 tokens): code = python-stdlib
# (CPython 3.11), math = GSM8K's training set (7,473 problems), web = WikiText-2's validation
# split (1.1 MB, 843 windows). With a 16,384-token BPE each moves by under 0.01 (code 0.413,
# math 0.435, web 0.479). The data sets are not needed at run time: only these numbers are.
ANCHORS: dict[str, float] = {"code": 0.403, "math": 0.427, "web": 0.480}
ANCHOR_CORPORA: dict[str, str] = {"code": "python-stdlib", "math": "GSM8K train", "web": "WikiText-2 valid"}
# Where each domain's reported band puts it on the NCA scale: the middle of 0.3-0.4 for code,
# just inside 0.5+ for web and math (the scale tops out near 0.66, spec section 4).
ANCHOR_TARGETS: dict[str, float] = {"code": 0.35, "math": 0.55, "web": 0.55}
# The bands the paper studied; a recommendation is always one of them.
STUDIED_BANDS: tuple[Band, ...] = (Band(0.2, 0.3), Band(0.3, 0.4), Band(0.4, 0.5), Band(0.5, 1.0))
MIN_WINDOWS = 8  # fewer windows than this say too little about a corpus
DEFAULT_WINDOWS = 1000  # windows read from a corpus (its first ones): 360k tokens at the defaults


def anchor_points() -> tuple[np.ndarray, np.ndarray]:
    """The calibration points (statistic, NCA score), sorted by statistic, targets made monotone."""
    names = sorted(ANCHORS, key=ANCHORS.get)
    xs = np.array([ANCHORS[n] for n in names])
    ys = np.maximum.accumulate(np.array([ANCHOR_TARGETS[n] for n in names]))
    return xs, ys


def mapped_score(statistic: float) -> float:
    """The NCA score a corpus statistic maps to: linear between the anchors, flat beyond them
    (no domain was measured outside them, so nothing is extrapolated)."""
    xs, ys = anchor_points()
    return float(np.interp(statistic, xs, ys))


def recommend(statistic: float) -> Band:
    """The studied band that holds the mapped score."""
    t = mapped_score(statistic)
    for band in STUDIED_BANDS:
        if band.lo <= t < band.hi:
            return band
    return STUDIED_BANDS[-1] if t >= STUDIED_BANDS[-1].lo else STUDIED_BANDS[0]


def nearest_domains(band: Band) -> list[str]:
    """The domains whose anchors map into `band` (what a recommendation is "like")."""
    return [d for d in sorted(ANCHORS) if recommend(ANCHORS[d]) == band]


@dataclass(frozen=True)
class CorpusScores:
    """The statistic of each window of a corpus."""

    scores: np.ndarray  # (windows,) gzip ratios
    window: int  # tokens per window
    tokens_read: int

    @property
    def median(self) -> float:
        return float(np.median(self.scores))


def token_stream(docs: Iterable[list[int]], eot: int) -> Iterator[int]:
    """Documents' token ids joined by the end-of-text token, as a language stream packs them."""
    for ids in docs:
        yield from ids
        yield eot


def window_scores(ids: np.ndarray, window: int) -> np.ndarray:
    """Gzip ratio of each whole window of `window` token ids, serialised as the band test does."""
    n = len(ids) // window
    if n == 0:
        return np.zeros(0)
    return score_tokens(np.asarray(ids[: n * window], dtype=np.int64).reshape(n, window))


def measure(docs: Iterable[list[int]], eot: int, window: int, max_windows: int = DEFAULT_WINDOWS,
            what: str = "the corpus") -> CorpusScores:
    """Score the first `max_windows` windows of a tokenised corpus; too few is a one-line error."""
    if window < 1 or max_windows < MIN_WINDOWS:
        raise NcalabError(f"match needs windows of at least 1 token and at least {MIN_WINDOWS} of them")
    budget = window * max_windows
    ids = np.fromiter((t for _, t in zip(range(budget), token_stream(docs, eot))), dtype=np.int64)
    scores = window_scores(ids, window)
    if len(scores) < MIN_WINDOWS:
        raise NcalabError(f"{what} has {len(ids):,} tokens, {len(scores)} windows of {window}; "
                          f"match needs at least {MIN_WINDOWS} windows ({MIN_WINDOWS * window:,} tokens)")
    return CorpusScores(scores, window, len(ids))
