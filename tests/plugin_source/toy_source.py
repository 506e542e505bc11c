"""A toy stage-1 source: sequence i counts up from a start fixed by i, one step every `period`
tokens, modulo `symbols`. Small, deterministic and learnable: the example of docs/sources.md."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ncalab.sources.sequence import SequenceSource


@dataclass
class ToySettings:  # the config section `toy`: --set toy.period=4
    period: int = 3  # tokens per count
    symbols: int = 16  # the vocabulary: 0..symbols-1

    def validate(self, seq_len: int) -> None:  # a ValueError becomes one line of error
        if self.period < 1 or self.symbols < 2:
            raise ValueError(f"period must be >= 1 and symbols >= 2, got {self.period} and {self.symbols}")


class ToySource(SequenceSource):
    name, label, settings = "toy", "toy counter", ToySettings

    def vocab_size(self, cfg):
        return self.section(cfg).symbols

    def sequences(self, cfg, split, start, count, length):
        s = self.section(cfg)
        first = np.arange(start, start + count)[:, None] * 7 + cfg.seed + (split == "val") * 3
        return ((first + np.arange(length)[None, :] // s.period) % s.symbols).astype(np.int64)
