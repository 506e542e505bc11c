"""`ncalab match` and `stage1.band=match`: a corpus measured with the bands' gzip statistic,
beside the NCA rules' distribution, and the band recommended for it (ncalab.data.match)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from ncalab.config import DataConfig, ExperimentConfig
from ncalab.data import match as m
from ncalab.data.corpora import open_corpus
from ncalab.data.tokenizer import get_tokenizer
from ncalab.nca.bands import Band, bin_fractions
from ncalab.nca.config import NCAConfig
from ncalab.services.explore import score_rules

MATCH = "match"  # the value of stage1.band that asks for a recommendation
NCA_RULES = 1000  # random rules scored for the NCA side of the comparison
_DOC_BATCH = 64


def _documents(corpus, tokenizer) -> Iterator[list[int]]:
    """The corpus's documents as token ids, tokenised a batch at a time (read only as far as needed)."""
    batch: list[str] = []
    for text in corpus.iter_texts():
        batch.append(text)
        if len(batch) == _DOC_BATCH:
            yield from tokenizer(batch, add_special_tokens=False, split_special_tokens=True)["input_ids"]
            batch = []
    if batch:
        yield from tokenizer(batch, add_special_tokens=False, split_special_tokens=True)["input_ids"]


def corpus_scores(data: DataConfig, cache_dir: Path, nca: NCAConfig,
                  windows: int = m.DEFAULT_WINDOWS) -> tuple[m.CorpusScores, str]:
    """(the statistic of each window of data.corpus, the tokenizer's id), read with the
    tokenizer an experiment with these data settings trains on (cached as it caches it)."""
    corpus = open_corpus(data.corpus)
    tok, tok_id = get_tokenizer(corpus, data.vocab_size, cache_dir, data.val_fraction, data.tokenizer)
    window = nca.score_frames * nca.patches_per_frame
    scores = m.measure(_documents(corpus, tok), tok.eos_token_id, window, windows, what=f"corpus {data.corpus!r}")
    return scores, tok_id


def _summary(scores: np.ndarray) -> dict:
    p10, p50, p90 = (float(x) for x in np.percentile(scores, [10, 50, 90]))
    return {"median": p50, "p10": p10, "p90": p90, "mean": float(scores.mean()), "bins": bin_fractions(scores)}


def match_corpus(data: DataConfig, cache_dir: Path, nca: NCAConfig, rules: int = NCA_RULES, seed: int = 0,
                 windows: int = m.DEFAULT_WINDOWS) -> dict:
    """The whole comparison as plain numbers (what `ncalab match --json` prints)."""
    cs, tok_id = corpus_scores(data, cache_dir, nca, windows)
    nca_scores = score_rules(rules, seed, nca)
    band = m.recommend(cs.median)
    return {
        "corpus": data.corpus, "tokenizer": tok_id, "window": cs.window, "windows": len(cs.scores),
        "tokens": cs.tokens_read, "statistic": _summary(cs.scores), "scores": [round(float(s), 6) for s in cs.scores],
        "nca": {"rules": rules, "seed": seed, **_summary(nca_scores), "scores": [round(float(s), 6) for s in nca_scores]},
        "anchors": {d: {"statistic": v, "corpus": m.ANCHOR_CORPORA[d], "band": _pair(m.recommend(v))} for d, v in m.ANCHORS.items()},
        "mapped_score": m.mapped_score(cs.median), "band": _pair(band), "like": m.nearest_domains(band),
    }


def _pair(band: Band) -> list[float]:
    return [band.lo, band.hi]


def recommended_band(cfg: ExperimentConfig, cache_dir: Path) -> list[float]:
    """stage1.band=match: the band recommended for the experiment's stage-2 corpus, read with
    its stage-2 tokenizer settings and windows of its own NCA scoring length."""
    cs, _ = corpus_scores(cfg.data, cache_dir, cfg.nca)
    return _pair(m.recommend(cs.median))
