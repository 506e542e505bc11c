"""The `eca` source: elementary cellular automata, as Zhang et al. 2025 pre-train on them
(ncalab.data.eca; docs/method.md)."""

from __future__ import annotations

import numpy as np

from ncalab.data.eca import ECASettings, decode_rows, eca_sequences, sequence_rules
from ncalab.sources.sequence import SequenceSource


class ECASource(SequenceSource):
    name, label, settings = "eca", "ECA", ECASettings

    def vocab_size(self, cfg):
        return self.section(cfg).vocab_size

    def sequences(self, cfg, split, start, count, length):
        return eca_sequences(self.section(cfg), cfg.seed, split, start, count, length)

    def statistics(self, cfg, seqs, start=0):
        s = self.section(cfg)
        rules = sequence_rules(s, cfg.seed, "val", start, len(seqs))
        cells = np.concatenate([decode_rows(row, s).ravel() for row in seqs])
        return {"rules": ",".join(str(r) for r in rules), "live cells": round(float(cells.mean()), 3),
                "rows per sequence": s.rows(seqs.shape[1])}

    def grid(self, cfg, seqs):
        return decode_rows(seqs[0], self.section(cfg))  # the space-time picture of the first


ECA = ECASource()
