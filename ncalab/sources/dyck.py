"""The `dyck` and `shuffle_dyck` sources: balanced brackets, the paper's formal-language control."""

from __future__ import annotations

from ncalab.config import DyckSection
from ncalab.config.stored import without_added
from ncalab.data.dyck import DyckConfig, dyck_sequences
from ncalab.data.formal import hu_shuffle_dyck
from ncalab.evaluation.incontext import dyck_validity
from ncalab.lazy import np
from ncalab.sources.sequence import SequenceSource


class DyckSource(SequenceSource):
    """Dyck and shuffle-Dyck (ncalab.data.dyck); with dyck.generator = hu, shuffle-Dyck is Hu et
    al. 2025's k-shuffle-Dyck walk (ncalab.data.formal). Both read the `dyck` section."""

    settings, settings_key = DyckSection, "dyck"

    def __init__(self, name: str, shuffle: bool):
        self.name, self.shuffle, self.in_context = name, shuffle, True
        self.label = "shuffle-Dyck" if shuffle else "Dyck"

    def section(self, cfg):
        return cfg.dyck

    def hu(self, cfg) -> bool:
        return self.shuffle and cfg.dyck.generator == "hu"

    def dyck_config(self, cfg):
        d = cfg.dyck
        return DyckConfig(pairs=d.pairs, depth_min=1 if self.hu(cfg) else d.depth_min, depth_max=d.depth_max,
                          p_open=d.p_open, shuffle=self.shuffle)

    def vocab_size(self, cfg):
        return 2 * cfg.dyck.pairs

    def statistics(self, cfg, seqs, start=0):
        """Its bracket depth (open brackets) along each sequence, from the sequence's start."""
        depth = np.cumsum(np.where(seqs < cfg.dyck.pairs, 1, -1), axis=1)
        return {**super().statistics(cfg, seqs, start), "mean depth": round(float(depth.mean()), 2),
                "max depth": int(depth.max()), "words closed": int((depth == 0).sum())}

    def reuse_settings(self, cfg):
        from dataclasses import asdict

        dyck = without_added(asdict(cfg.dyck), "dyck")  # the keys of runs from before `generator` stay
        if not self.shuffle:
            dyck.pop("generator", None)  # Dyck has one generator
        return {"dyck": dyck, "seq_len": cfg.stage1_seq_len}

    def sequences(self, cfg, split, start, count, length):
        if self.hu(cfg):
            d = cfg.dyck
            return hu_shuffle_dyck(d.pairs, d.depth_max, d.p_open, cfg.seed, split, start, count, length)
        return dyck_sequences(self.dyck_config(cfg), cfg.seed, split, start, count, length)

    def in_context_eval(self, model, cfg, placement):
        n = cfg.stage1.icl_sequences
        return dyck_validity(model, self.dyck_config(cfg), self._make(cfg, "val")(0, n), placement) if n else []


DYCK, SHUFFLE_DYCK = DyckSource("dyck", False), DyckSource("shuffle_dyck", True)
