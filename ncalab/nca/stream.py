"""Streams of band-filtered NCA training sequences (spec sections 3-5).

Candidates are drawn in batches: every candidate is simulated for the scoring window, scored,
and only the rules inside the band are simulated on to a full sequence. The scored frames are
the first frames of the sequence (the trajectory the score was measured on).

With ``fresh_trajectories`` (the paper's way, the default) the sequences of an accepted rule
start from fresh initial states (sim seeds 1..S in ncalab.nca.seeds), not from the state it
was scored on; without it, the scored trajectory is the first. With ``sims_per_rule`` S > 1
(training split only) each accepted rule yields S trajectories, not re-scored, as the
paper's code does with its rule bank. A batch holds all of them, trajectory-major: rows
[s*k, (s+1)*k) are trajectory s of the batch's k accepted rules, in candidate order; so a batch
is still a pure function of its index.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
import torch

from ncalab.errors import NcalabError
from ncalab.nca import kernels
from ncalab.nca.bands import Band
from ncalab.nca.complexity import score_tokens
from ncalab.nca.config import NCAConfig
from ncalab.nca.engine import RuleBatch
from ncalab.nca.seeds import rule_seeds, sim_seeds
from ncalab.nca.tokens import make_example


@dataclass
class SequenceBatch:
    """Accepted sequences with what is needed to trace each back to its rule: sequence i is
    trajectory (rule_seeds[i], sim_seeds[i]), i.e. RuleBatch([rule], [sim], cfg).frames(...)."""

    tokens: np.ndarray  # (k, L + 1)
    rule_seeds: np.ndarray  # (k,) int64
    scores: np.ndarray  # (k,) gzip ratio of the rule's scoring window (measured on its sim seed == rule seed)
    scored: int = 0  # candidates simulated and scored to find them
    grids: np.ndarray | None = field(default=None, repr=False)  # (k, F, H, W) when kept
    sim_seeds: np.ndarray | None = None  # (k,) int64 initial-state seeds; None: equal to rule_seeds

    def __post_init__(self) -> None:
        if self.sim_seeds is None:
            self.sim_seeds = np.array(self.rule_seeds, dtype=np.int64, copy=True)

    def __len__(self) -> int:
        return int(self.tokens.shape[0])


def patch_tokens(frames: np.ndarray, cfg: NCAConfig) -> np.ndarray:
    """(B, F, H, W) or (B, F, H*W) u8 frames -> (B, F, patches) int32 (fast path of nca.tokens)."""
    flat = np.ascontiguousarray(frames.reshape(frames.shape[0], frames.shape[1], cfg.cells))  # no -1: B may be 0
    return kernels.patch_tokens(flat, cfg.height, cfg.width, cfg.patch, cfg.alphabet)


def score_window(frames: np.ndarray, cfg: NCAConfig) -> np.ndarray:
    """(B, F, ...) u8 recorded frames -> gzip score of the first score_frames frames."""
    return score_tokens(patch_tokens(frames[:, : cfg.score_frames], cfg))


def frames_to_sequences(frames: np.ndarray, cfg: NCAConfig) -> np.ndarray:
    """(B, F, N) u8 frames -> (B, L + 1) tokens with [START] ... [END] around every frame."""
    f = cfg.frames_per_seq
    toks = patch_tokens(frames[:, :f], cfg)
    b = toks.shape[0]
    out = np.empty((b, f, cfg.frame_len), dtype=np.int64 if cfg.token_dtype == "int32" else np.int32)
    out[:, :, 0] = cfg.start_token
    out[:, :, 1:-1] = toks
    out[:, :, -1] = cfg.end_token
    return out.reshape(b, f * cfg.frame_len)[:, : cfg.seq_len + 1].astype(cfg.token_dtype)


# Candidates scored without a single rule in band before a stream gives up (a band the
# settings never reach, e.g. 2 colours score at most about 0.2, below the code band).
NO_RULE_LIMIT = 20_000


@dataclass(frozen=True)
class BatchShare:
    """The candidate batches one reader of a stream takes: start, start + stride, ... (DataLoader
    worker i of n takes BatchShare(i, n), so no two workers share a rule)."""

    start: int = 0
    stride: int = 1


class FilteredSource:
    """Yields batches of accepted sequences from fresh rules of one split of a stream seed."""

    def __init__(self, cfg: NCAConfig, band: Band | None, seed: int, split: str = "train",
                 batch_rules: int = 1024, device: str | torch.device = "cpu", keep_grids: bool = False,
                 share: BatchShare = BatchShare()):
        self.cfg, self.band, self.seed, self.split = cfg, band, seed, split
        self.batch_rules, self.device, self.keep_grids = batch_rules, device, keep_grids
        self.next_batch_index = share.start  # batch j uses rule counters [j*B, (j+1)*B)
        self.stride = share.stride
        self.rules_scored = 0
        self.rules_accepted = 0

    @property
    def sims(self) -> int:
        """Trajectories per accepted rule: nca.sims_per_rule for training, 1 for validation."""
        return int(self.cfg.sims_per_rule) if self.split == "train" else 1

    @property
    def acceptance(self) -> float:
        """Observed fraction of candidates in band (a guess of 0.25 before any batch)."""
        return self.rules_accepted / self.rules_scored if self.rules_scored else 0.25

    def candidates_for(self, sequences: int) -> int:
        """About how many candidates to draw for ``sequences`` more accepted ones (with margin)."""
        return int(-(-sequences // self.sims) / max(self.acceptance, 1e-3) * 1.3) + 16

    def next_batch(self, max_rules: int | None = None) -> SequenceBatch:
        """The accepted sequences among the next batch of candidates (the first ``max_rules`` of
        it when given, so a caller that needs few sequences does not simulate a whole batch)."""
        cfg = self.cfg
        j = self.next_batch_index
        self.next_batch_index += self.stride
        n = self.batch_rules if max_rules is None else max(1, min(max_rules, self.batch_rules))
        seeds = rule_seeds(self.seed, self.split, j * self.batch_rules, n)
        rb = RuleBatch(seeds, seeds, cfg, self.device)
        n_first = max(cfg.score_frames, 1)
        first = rb.frames(n_first).reshape(len(rb), n_first, -1)
        scores = score_window(first, cfg)
        keep = np.flatnonzero(self.band.contains(scores)) if self.band is not None else np.arange(len(rb))
        self.rules_scored += len(rb)
        self.rules_accepted += len(keep)
        if self.rules_accepted == 0 and self.rules_scored >= NO_RULE_LIMIT:
            raise NcalabError(
                f"none of {self.rules_scored:,} random rules scored in the band {self.band.lo}-{self.band.hi} with "
                f"{cfg.alphabet} colours (highest score seen {float(scores.max()):.3f}); choose a band these settings "
                f"reach, e.g. --set stage1.band=LO:HI (see `ncalab nca complexity --alphabet {cfg.alphabet}`)")
        rules, rule_scores = seeds[keep], scores[keep]
        first_sim = 1 if cfg.fresh_trajectories else 0  # trajectory 0 is the scored one
        if first_sim == 0:
            rb.select(keep)
            n_rest = max(cfg.frames_per_seq - n_first, 0)
            rest = rb.frames(n_rest).reshape(len(keep), n_rest, cfg.cells)  # explicit: no rule may be in band
            frames = np.concatenate([first[keep], rest], axis=1)[:, : cfg.frames_per_seq]
        else:
            frames = np.empty((0, cfg.frames_per_seq, cfg.cells), dtype=np.uint8)
        starts = rules.copy()
        more_sims = np.arange(max(first_sim, 1), first_sim + self.sims)
        if len(more_sims) and len(keep):
            # the other trajectories of every accepted rule, trajectory-major; not re-scored
            more = sim_seeds(rules[None, :], more_sims[:, None]).reshape(-1)
            more_rules = np.tile(rules, len(more_sims))
            extra = RuleBatch(more_rules, more, cfg, self.device).frames(cfg.frames_per_seq)
            frames = np.concatenate([frames, extra.reshape(len(more), cfg.frames_per_seq, cfg.cells)])
            starts = more if first_sim else np.concatenate([starts, more])
            rules, rule_scores = np.tile(rules, self.sims), np.tile(rule_scores, self.sims)
        batch = SequenceBatch(frames_to_sequences(frames, cfg), rules, rule_scores, len(seeds), sim_seeds=starts)
        if self.keep_grids:
            batch.grids = frames.reshape(len(frames), cfg.frames_per_seq, cfg.height, cfg.width)
        return batch

    def __iter__(self) -> Iterator[SequenceBatch]:
        while True:
            yield self.next_batch()


class NCASequenceDataset(torch.utils.data.IterableDataset):
    """Endless (input_ids, labels) examples for a torch DataLoader; labels mask the first frames.

    With several DataLoader workers, each takes every n-th candidate batch, so no two workers
    share a rule (with nca.sims_per_rule > 1 a rule repeats within its batch, by design).
    """

    def __init__(self, cfg: NCAConfig, band: Band | None, seed: int, split: str = "train", batch_rules: int = 1024):
        super().__init__()
        self.cfg, self.band, self.seed, self.split, self.batch_rules = cfg, band, seed, split, batch_rules

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        share = BatchShare(info.id, info.num_workers) if info is not None else BatchShare()
        source = FilteredSource(self.cfg, self.band, self.seed, self.split, self.batch_rules, share=share)
        for batch in source:
            for seq, rule, sim in zip(batch.tokens, batch.rule_seeds, batch.sim_seeds):
                inputs, labels = make_example(seq, self.cfg)
                yield {"input_ids": torch.from_numpy(inputs), "labels": torch.from_numpy(labels), "rule_seed": int(rule),
                       "sim_seed": int(sim)}
