"""What stage 1 trains on: the paper's NCA data and its controls (spec section 7).

Each source is an entry of SOURCES with the same small interface: its vocabulary, the
settings that determine its data (for reuse keys), its training stream and held-out
sequences, and an optional in-context evaluation of the stage-1 model. Transfer treats every
source alike: its embedding and head are replaced by fresh ones for the language vocabulary.
A new source is a new entry here, not a branch in the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ncalab.config import ExperimentConfig
from ncalab.errors import NcalabError
from ncalab.experiment.compute import model_compute


@dataclass
class Stage1Data:
    vocab_size: int
    batches: object  # next() -> (inputs, targets), state_dict(), load_state_dict()
    validation: list  # [(inputs, targets)] of held-out sequences


class Source(Protocol):
    name: str
    label: str  # a few words for tables and logs

    def vocab_size(self, cfg: ExperimentConfig) -> int: ...
    def reuse_settings(self, cfg: ExperimentConfig) -> dict: ...
    def open(self, cfg: ExperimentConfig, cache: Path, note: Callable[[str], None]) -> Stage1Data: ...
    def in_context_eval(self, model, cfg: ExperimentConfig, placement) -> list[dict]: ...


class NCASource:
    name, label = "nca", "NCA"

    def vocab_size(self, cfg):
        return cfg.nca.vocab_size

    def reuse_settings(self, cfg):
        band = cfg.band()
        return {"nca": without_added(cfg.nca.to_dict(), "nca"), "stage1": {"band": [band.lo, band.hi]}}

    def open(self, cfg, cache, note):
        from ncalab.train.batches import NCABatches, nca_validation

        s1, band = cfg.stage1, cfg.band()
        return Stage1Data(cfg.nca.vocab_size, NCABatches(cfg.nca, band, cfg.seed, s1.batch_size),
                          nca_validation(cfg.nca, band, cfg.seed, s1.val_sequences, s1.batch_size))

    def in_context_eval(self, model, cfg, placement):
        from ncalab.train.incontext import nca_in_context

        return nca_in_context(model, cfg.nca, cfg.band(), cfg.seed, cfg.stage1.icl_sequences, placement)


class DyckSource:
    def __init__(self, name: str, shuffle: bool):
        self.name, self.shuffle = name, shuffle
        self.label = "shuffle-Dyck" if shuffle else "Dyck"

    def dyck_config(self, cfg):
        from ncalab.data.dyck import DyckConfig

        d = cfg.dyck
        return DyckConfig(pairs=d.pairs, depth_min=d.depth_min, depth_max=d.depth_max, p_open=d.p_open,
                          shuffle=self.shuffle)

    def vocab_size(self, cfg):
        return 2 * cfg.dyck.pairs

    def reuse_settings(self, cfg):
        from dataclasses import asdict

        return {"dyck": asdict(cfg.dyck), "seq_len": cfg.stage1_seq_len}

    def _make(self, cfg, split):
        from ncalab.data.dyck import dyck_sequences

        dc, length = self.dyck_config(cfg), cfg.stage1_seq_len + 1
        return lambda start, count: dyck_sequences(dc, cfg.seed, split, start, count, length)

    def open(self, cfg, cache, note):
        from ncalab.train.batches import IndexedBatches, fixed_batches

        s1 = cfg.stage1
        val = fixed_batches(self._make(cfg, "val")(0, s1.val_sequences), s1.batch_size)
        return Stage1Data(self.vocab_size(cfg), IndexedBatches(self._make(cfg, "train"), s1.batch_size), val)

    def in_context_eval(self, model, cfg, placement):
        from ncalab.train.incontext import dyck_validity

        n = cfg.stage1.icl_sequences
        return dyck_validity(model, self.dyck_config(cfg), self._make(cfg, "val")(0, n), placement) if n else []


class TextSource:
    """Natural text as pre-pre-training (the paper's C4 control): its own corpus and tokenizer
    (data.tokenizer when set, else a BPE of data.vocab_size trained on this corpus)."""

    name, label = "text", "text"

    def vocab_size(self, cfg):
        if cfg.data.tokenizer:
            from ncalab.data.tokenizer import pretrained_tokenizer

            return len(pretrained_tokenizer(cfg.data.tokenizer)[0])
        return cfg.data.vocab_size

    def reuse_settings(self, cfg):
        d = cfg.data
        return {"text": {"corpus": cfg.stage1.corpus, "tokenizer": d.tokenizer, "vocab_size": d.vocab_size,
                         "val_fraction": d.val_fraction}, "seq_len": cfg.stage1_seq_len}

    def open(self, cfg, cache, note):
        from ncalab.data.lm_data import TokenBatches, val_batches
        from ncalab.experiment import language
        from ncalab.train.batches import LanguageBatches, language_validation

        s1, length = cfg.stage1, cfg.stage1_seq_len
        lang = language.prepare(s1.corpus, cfg.data.tokenizer, cfg.data.vocab_size, cfg.data.val_fraction, cache,
                                train_tokens=int(stage1_tokens(cfg) * 1.05) + length * 64,
                                val_tokens=s1.val_sequences * (length + 1) + length + 1, note=note)
        windows = val_batches(lang.val, length, s1.batch_size, s1.val_sequences * length)
        if not windows:
            raise NcalabError(f"stage1.corpus {s1.corpus} has too little held-out text for one sequence of "
                              f"{length} tokens; use a larger corpus or data.val_fraction")
        batches = LanguageBatches(TokenBatches(lang.train, length, s1.batch_size, seed=cfg.seed))
        return Stage1Data(lang.vocab_size, batches, language_validation(windows))

    def in_context_eval(self, model, cfg, placement):
        return []  # held-out perplexity is the stage-1 validation loss already


SOURCES: dict[str, Source] = {s.name: s for s in (NCASource(), DyckSource("dyck", False),
                                                   DyckSource("shuffle_dyck", True), TextSource())}

# Settings added after the first stores were written: each is part of a reuse key only when it
# differs from the value that reproduces the older runs, so the keys of existing stores match.
ADDED_DEFAULTS = {"nca": {"sims_per_rule": 1}, "stage1": {"source": "nca", "corpus": None, "match": "tokens",
                                                          "match_source": None}}


def without_added(section: dict, name: str) -> dict:
    added = ADDED_DEFAULTS.get(name, {})
    return {k: v for k, v in section.items() if not (k in added and v == added[k])}


def stage1_tokens(cfg: ExperimentConfig) -> int:
    """The stage-1 token budget of this source: stage1.tokens, or with stage1.match = flops the
    tokens whose training costs what stage1.tokens of stage1.match_source cost (FLOPs per token
    differ between sources through the output head's vocabulary)."""
    s1 = cfg.stage1
    if s1.match == "tokens" or s1.match_source == s1.source:
        return s1.tokens

    def fpt(name: str) -> int:
        return model_compute(cfg.model, SOURCES[name].vocab_size(cfg), cfg.stage1_seq_len).flops_per_token

    return max(1, round(s1.tokens * fpt(s1.match_source) / fpt(s1.source)))
