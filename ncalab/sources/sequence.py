"""The easy way to write a stage-1 source: a stream whose sequence i of a split is a pure
function of (seed, split, i). Subclass SequenceSource, give it a name, a label, a settings
dataclass and two methods (vocab_size, sequences); it gets the training stream, the held-out
batches, the reuse key and a sample for `ncalab sources` and the TUI. docs/sources.md has the
whole interface and a plugin package built on this class (tests/plugin_source/).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np

from ncalab.config import ExperimentConfig
from ncalab.sources.interface import SourceSample, Stage1Data
from ncalab.train.batches import IndexedBatches, fixed_batches


class SequenceSource:
    name = "?"
    label = "?"
    settings: type | None = None  # a dataclass: the config section `name` (`--set name.key=value`)
    in_context = False  # whether in_context_eval measures anything

    def section(self, cfg: ExperimentConfig):
        """This source's settings in `cfg` (the defaults until set)."""
        return cfg.source_section(self.name) if self.settings is not None else None

    def vocab_size(self, cfg: ExperimentConfig) -> int:
        raise NotImplementedError

    def sequences(self, cfg: ExperimentConfig, split: str, start: int, count: int, length: int) -> np.ndarray:
        """(count, length) int64 token ids in [0, vocab_size): sequences start .. start+count-1
        of `split` ("train" or "val") for cfg.seed; the same for the same arguments, always."""
        raise NotImplementedError

    def reuse_settings(self, cfg: ExperimentConfig) -> dict:
        """Everything that determines the data (the reuse key of stage 1 hashes it)."""
        section = self.section(cfg)
        return {self.name: asdict(section) if section is not None else {}, "seq_len": cfg.stage1_seq_len}

    def _make(self, cfg: ExperimentConfig, split: str) -> Callable[[int, int], np.ndarray]:
        length = cfg.stage1_seq_len + 1  # inputs and their next-token targets
        return lambda start, count: self.sequences(cfg, split, start, count, length)

    def open(self, cfg: ExperimentConfig, cache: Path, note: Callable[[str], None], world=None):
        s1 = cfg.stage1
        val = fixed_batches(self._make(cfg, "val")(0, s1.val_sequences), s1.batch_size)
        rank, size = (world.rank, world.size) if world else (0, 1)
        return Stage1Data(self.vocab_size(cfg), IndexedBatches(self._make(cfg, "train"), s1.batch_size, rank, size), val)

    def in_context_eval(self, model, cfg: ExperimentConfig, placement) -> list[dict]:
        return []

    def sample(self, cfg: ExperimentConfig, count: int = 4) -> SourceSample:
        seqs = self._make(cfg, "val")(0, count)
        return SourceSample(seqs, self.statistics(cfg, seqs), self.grid(cfg, seqs))

    def statistics(self, cfg: ExperimentConfig, seqs: np.ndarray, start: int = 0) -> dict:
        """The source's statistics of `seqs`, sequences start .. start+len-1 of split val."""
        return {"distinct tokens": len(np.unique(seqs)), "vocabulary": self.vocab_size(cfg)}

    def grid(self, cfg: ExperimentConfig, seqs: np.ndarray) -> np.ndarray | None:
        return None
