"""The `ww` source: the copy language of Hu et al. 2025 (ncalab.data.formal; docs/method.md)."""

from __future__ import annotations

from ncalab.data.formal import WWSettings, ww_sequences
from ncalab.sources.sequence import SequenceSource


class WWSource(SequenceSource):
    name, label, settings = "ww", "ww (copy)", WWSettings

    def vocab_size(self, cfg):
        return self.section(cfg).vocab_size

    def sequences(self, cfg, split, start, count, length):
        return ww_sequences(self.section(cfg), cfg.seed, split, start, count, length)


WW = WWSource()
