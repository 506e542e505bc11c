"""Statistics of trajectories and corpora, beyond the complexity score."""

from __future__ import annotations

import numpy as np

from ncalab.nca import complexity as cx
from ncalab.nca.config import NCAConfig
from ncalab.nca.stream import patch_tokens
from ncalab.nca.tokens import decode_frames


def trajectory_stats(grids: np.ndarray, patch_tokens: np.ndarray, cfg: NCAConfig) -> dict[str, np.ndarray]:
    """Per trajectory: (B, F, H, W) grids and their (B, F, patches) tokens -> arrays of B values."""
    toks = patch_tokens.reshape(patch_tokens.shape[0], -1)
    return {
        "cell_entropy_bits": cx.cell_entropy(grids, cfg.alphabet),
        "change_rate": cx.change_rate(grids),
        "static_frame_fraction": cx.static_frame_fraction(grids),
        "distinct_tokens": cx.distinct_tokens(toks).astype(np.float64),
        "unigram_entropy_bits": cx.unigram_entropy(toks),
    }


def summarise(values: np.ndarray) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        return {"mean": float("nan"), "sd": float("nan"), "min": float("nan"), "max": float("nan")}
    return {"mean": float(v.mean()), "sd": float(v.std()), "min": float(v.min()), "max": float(v.max())}


def sequence_grids(seqs: np.ndarray, cfg: NCAConfig) -> np.ndarray:
    """(k, L + 1) stored sequences -> (k, F, H, W) of their complete frames."""
    whole = (seqs.shape[1] // cfg.frame_len) * cfg.frame_len
    return decode_frames(seqs[:, :whole], cfg)


def corpus_statistics(corpus, sample: int = 2000, seed: int = 0) -> dict:
    """Counts and token statistics over the whole split; trajectory statistics on a sample."""
    cfg = corpus.cfg
    counts = np.zeros(cfg.vocab_size, dtype=np.int64)
    n_tokens = 0
    for shard in corpus.shards():
        for i in range(0, len(shard), 4096):
            block = np.asarray(shard[i : i + 4096, :-1]).reshape(-1)
            counts += np.bincount(block, minlength=cfg.vocab_size)
            n_tokens += block.size
    rules = corpus.all_rules()
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(len(corpus), size=min(sample, len(corpus)), replace=False)) if len(corpus) else np.zeros(0, int)
    seqs = np.stack([corpus[int(i)] for i in idx]) if len(idx) else np.zeros((0, corpus.row), dtype=np.int64)
    grids = sequence_grids(seqs.astype(np.int64), cfg) if len(idx) else np.zeros((0, 1, cfg.height, cfg.width), np.uint8)
    patches = grids.reshape(grids.shape[0], grids.shape[1], -1)  # only for shapes when empty

    toks = patch_tokens(grids, cfg) if len(idx) else patches
    per_traj = trajectory_stats(grids, toks, cfg) if len(idx) else {}
    scores = rules["score"].astype(np.float64)
    return {
        "path": str(corpus.path), "split": corpus.split, "sequences": len(corpus), "tokens": n_tokens,
        "vocab_size": cfg.vocab_size, "distinct_tokens": int((counts > 0).sum()),
        "unigram_entropy_bits": cx.corpus_unigram_entropy(counts),
        "unique_rules": int(np.unique(rules["rule_seed"]).size),
        "sims_per_rule": int(cfg.sims_per_rule),
        "band": corpus.manifest.get("band"), "domain": corpus.manifest.get("domain"),
        "score": summarise(scores) | {"deciles": np.percentile(scores, np.arange(10, 100, 10)).tolist() if scores.size else []},
        "sampled_trajectories": int(len(idx)),
        "trajectory": {k: summarise(v) for k, v in per_traj.items()},
    }
