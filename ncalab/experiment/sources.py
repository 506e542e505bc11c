"""What stage 1 trains on: the paper's NCA data and its controls (spec section 7).

Every source is an entry point of the group `ncalab.sources` (ncalab.plugins): the built-in
ones below and in eca_source.py and ww_source.py, and any installed plugin. SOURCES maps a name
to its source, imported on first use. Each has the same small interface (Source, below; the
whole of it in docs/sources.md): its vocabulary, the settings that determine its data (for
reuse keys), its training stream and held-out sequences, an optional in-context evaluation of
the stage-1 model and an optional sample for the front ends. Transfer treats every source
alike: its embedding and head are replaced by fresh ones for the language vocabulary. A new
source is a new entry point, not a branch in the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from ncalab import plugins
from ncalab.config import DyckSection, ExperimentConfig
from ncalab.config.stored import without_added
from ncalab.errors import NcalabError
from ncalab.experiment.compute import model_compute
from ncalab.experiment.sequence_source import SequenceSource, SourceSample
from ncalab.nca.config import NCAConfig


@dataclass
class Stage1Data:
    vocab_size: int
    batches: object  # next() -> (inputs, targets), state_dict(), load_state_dict()
    validation: list  # [(inputs, targets)] of held-out sequences


class Source(Protocol):
    name: str  # its entry-point name, the value of stage1.source
    label: str  # a few words for tables and logs
    in_context: bool  # whether in_context_eval measures anything for this source
    settings: type | None  # optional: a dataclass, the config section `name` (validate(seq_len) checks it)

    def vocab_size(self, cfg: ExperimentConfig) -> int:
        """Its token ids are 0..vocab_size-1; the vocabulary also sets what a token costs (the
        output head's FLOPs: stage1.match = flops compares sources by it)."""
    def reuse_settings(self, cfg: ExperimentConfig) -> dict: ...
    def open(self, cfg: ExperimentConfig, cache: Path, note: Callable[[str], None], world=None) -> Stage1Data:
        """The training stream (this process's share of every global batch) and held-out batches."""
    def in_context_eval(self, model, cfg: ExperimentConfig, placement) -> list[dict]: ...
    # optional: sample(cfg, count) -> SourceSample, what `ncalab sources` and the TUI show
    # optional: sample_settings, ("KEY=VALUE", ...) the TUI shows it with when nothing else is set
    # optional: save_exhibit(cfg, folder), files beside the stage-1 model that `ncalab report` shows


class NCASource:
    """NCA sequences streamed from the engine; or, when stage1.corpus names a stored NCA corpus
    (a `nca generate` folder or its `nca export` parquet), that corpus's training rows in order
    (state: the next row), validated on its held-out rules (the first stage1.val_sequences of
    its val split), with its own NCA settings; nca.seq_len must be its sequence length.
    A stage1.corpus of natural text is the text source's, and ignored here as Dyck ignores it,
    so one `--set stage1.corpus=...` serves a whole `--grid stage1.source=...` sweep."""

    name, label, in_context = "nca", "NCA", True
    settings = NCAConfig  # the `nca` section

    @staticmethod
    def stored(cfg):
        """The stored corpus stage 1 reads (None: the engine's stream), checked against the settings."""
        s1 = cfg.stage1
        if not s1.corpus:
            return None
        from ncalab.nca.stored import is_nca_corpus, open_stored

        if not is_nca_corpus(s1.corpus):
            if not s1.corpus.startswith("hf:") and s1.corpus != "python-stdlib" and not Path(s1.corpus).expanduser().exists():
                raise NcalabError(f"stage1.corpus {s1.corpus} does not exist")
            return None  # a natural-language corpus: the text source's

        corpus = open_stored(s1.corpus)
        if corpus.cfg.seq_len != cfg.nca.seq_len:
            raise NcalabError(f"the NCA corpus {s1.corpus} has sequences of {corpus.cfg.seq_len} tokens, "
                              f"nca.seq_len is {cfg.nca.seq_len}: --set nca.seq_len={corpus.cfg.seq_len}")
        splits = corpus.manifest["splits"]
        have = splits.get("train", {}).get("sequences", 0)
        need = -(-s1.tokens // (s1.batch_size * cfg.nca.seq_len)) * s1.batch_size
        if s1.match == "tokens" and need > have:  # (a FLOPs-matched budget is checked when stage 1 opens)
            raise NcalabError(f"the NCA corpus {s1.corpus} has {have:,} training sequences; stage 1 needs {need:,} "
                              f"({s1.tokens:,} tokens): lower stage1.tokens or generate more")
        held_out = splits.get("val", {}).get("sequences", 0)
        if s1.val_sequences > held_out:
            raise NcalabError(f"the NCA corpus {s1.corpus} has {held_out:,} held-out sequences, fewer than "
                              f"stage1.val_sequences={s1.val_sequences} (generate it with more --val-sequences)")
        return corpus

    def vocab_size(self, cfg):
        corpus = self.stored(cfg)
        return (corpus.cfg if corpus else cfg.nca).vocab_size

    def reuse_settings(self, cfg):
        corpus = self.stored(cfg)
        if corpus is not None:  # the corpus's own settings and identity determine the data
            band = [corpus.band.lo, corpus.band.hi] if corpus.band else None
            return {"nca": without_added(corpus.cfg.to_dict(), "nca"), "stage1": {"band": band},
                    "nca_corpus": corpus.identity}
        band = cfg.band()
        return {"nca": without_added(cfg.nca.to_dict(), "nca"), "stage1": {"band": [band.lo, band.hi]}}

    def open(self, cfg, cache, note, world=None):
        from ncalab.train.batches import NCABatches, nca_validation

        s1, band = cfg.stage1, cfg.band()
        corpus = self.stored(cfg)
        if corpus is not None:
            return self._open_stored(cfg, corpus, note, world)
        if cfg.nca_stream == "indexed":
            return self._open_indexed(cfg, world)
        return Stage1Data(cfg.nca.vocab_size, NCABatches(cfg.nca, band, cfg.seed, s1.batch_size),
                          nca_validation(cfg.nca, band, cfg.seed, s1.val_sequences, s1.batch_size))

    @staticmethod
    def _open_indexed(cfg, world):
        """The addressable stream: sequence g of the split is a pure function of g, so every
        process makes only its own share and a resumed run continues on any number of them."""
        import torch

        from ncalab.nca.indexed import IndexedNCAStream
        from ncalab.nca.tokens import make_example
        from ncalab.train.batches import IndexedBatches

        s1, band = cfg.stage1, cfg.band()
        train = IndexedNCAStream(cfg.nca, band, cfg.seed, "train", **rule_bank(cfg))
        inputs, labels = make_example(IndexedNCAStream(cfg.nca, band, cfg.seed, "val").sequences(0, s1.val_sequences)[0],
                                      cfg.nca)
        validation = [(torch.from_numpy(inputs[i : i + s1.batch_size]), torch.from_numpy(labels[i : i + s1.batch_size]))
                      for i in range(0, len(inputs), s1.batch_size)]
        rank, size = (world.rank, world.size) if world else (0, 1)
        batches = IndexedBatches(lambda start, n: train.sequences(start, n)[0], s1.batch_size, rank, size,
                                 example=lambda seqs: make_example(seqs, cfg.nca))
        return Stage1Data(cfg.nca.vocab_size, batches, validation)

    @staticmethod
    def _open_stored(cfg, corpus, note, world=None):
        import torch

        from ncalab.nca.tokens import make_example
        from ncalab.train.batches import IndexedBatches

        s1, length = cfg.stage1, cfg.stage1_seq_len
        train, val = corpus.split("train"), corpus.split("val")
        need = -(-stage1_tokens(cfg) // (s1.batch_size * length)) * s1.batch_size
        if need > len(train):
            raise NcalabError(f"the NCA corpus {s1.corpus} has {len(train):,} training sequences; stage 1 needs "
                              f"{need:,} ({stage1_tokens(cfg):,} tokens): lower stage1.tokens or generate more")
        note(f"stage 1 from the stored NCA corpus {cfg.stage1.corpus} ({len(train):,} sequences, {corpus.kind})")

        def example(seqs):
            return make_example(seqs, corpus.cfg)

        inputs, labels = example(val.rows(0, s1.val_sequences))  # loss-masked like training
        validation = [(torch.from_numpy(inputs[i : i + s1.batch_size]), torch.from_numpy(labels[i : i + s1.batch_size]))
                      for i in range(0, len(inputs), s1.batch_size)]
        rank, size = (world.rank, world.size) if world else (0, 1)
        return Stage1Data(corpus.cfg.vocab_size, IndexedBatches(train.rows, s1.batch_size, rank, size, example=example),
                          validation)

    def sample(self, cfg, count=4):
        from ncalab.nca.indexed import IndexedNCAStream

        seqs = IndexedNCAStream(cfg.nca, cfg.band(), cfg.seed, "val").sequences(0, count)[0]
        return SourceSample(seqs, {"distinct tokens": int(len(set(seqs.ravel().tolist()))),
                                   "vocabulary": cfg.nca.vocab_size})

    def rules_of(self, cfg):
        """The NCA settings and band of the rules stage 1 reads (a stored corpus's own)."""
        corpus = self.stored(cfg)
        return (corpus.cfg, corpus.band or cfg.band()) if corpus else (cfg.nca, cfg.band())

    def in_context_eval(self, model, cfg, placement):
        from ncalab.train.incontext import nca_in_context

        nca, band = self.rules_of(cfg)
        return nca_in_context(model, nca, band, cfg.seed, cfg.stage1.icl_sequences, placement)

    def save_exhibit(self, cfg, folder: Path) -> None:
        """A few of the rules it trained on, with frames, for the report (ncalab.nca.strip)."""
        from ncalab.nca import strip

        nca, band = self.rules_of(cfg)
        strip.save(folder, strip.first_rules(nca, band, cfg.seed))


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
        from ncalab.data.dyck import DyckConfig

        d = cfg.dyck
        return DyckConfig(pairs=d.pairs, depth_min=1 if self.hu(cfg) else d.depth_min, depth_max=d.depth_max,
                          p_open=d.p_open, shuffle=self.shuffle)

    def vocab_size(self, cfg):
        return 2 * cfg.dyck.pairs

    def statistics(self, cfg, seqs, start=0):
        """Its bracket depth (open brackets) along each sequence, from the sequence's start."""
        import numpy as np

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
        from ncalab.data.dyck import dyck_sequences
        from ncalab.data.formal import hu_shuffle_dyck

        if self.hu(cfg):
            d = cfg.dyck
            return hu_shuffle_dyck(d.pairs, d.depth_max, d.p_open, cfg.seed, split, start, count, length)
        return dyck_sequences(self.dyck_config(cfg), cfg.seed, split, start, count, length)

    def in_context_eval(self, model, cfg, placement):
        from ncalab.train.incontext import dyck_validity

        n = cfg.stage1.icl_sequences
        return dyck_validity(model, self.dyck_config(cfg), self._make(cfg, "val")(0, n), placement) if n else []


class TextSource:
    """Natural text as pre-pre-training (the paper's C4 control): its own corpus and tokenizer
    (data.tokenizer when set, else a BPE of data.vocab_size trained on this corpus, or on stage
    2's corpus when its embeddings carry over, transfer.embeddings = paper)."""

    name, label, in_context = "text", "text", False
    # it needs a corpus: the TUI shows it on the standard library, the corpus every machine has
    sample_settings = ("stage1.corpus=python-stdlib",)

    def vocab_size(self, cfg):
        if cfg.data.tokenizer:
            from ncalab.data.tokenizer import pretrained_tokenizer

            return len(pretrained_tokenizer(cfg.data.tokenizer)[0])
        return cfg.data.vocab_size

    def reuse_settings(self, cfg):
        d = cfg.data
        text = {"corpus": cfg.stage1.corpus, "tokenizer": d.tokenizer, "vocab_size": d.vocab_size,
                "val_fraction": d.val_fraction}
        if cfg.keeps_embeddings and not d.tokenizer:  # the BPE of stage 2's corpus
            text["tokenizer_corpus"] = d.corpus
        return {"text": text, "seq_len": cfg.stage1_seq_len}

    def open(self, cfg, cache, note, world=None):
        from ncalab.data.lm_data import TokenBatches, val_batches
        from ncalab.experiment import language
        from ncalab.train.batches import LanguageBatches, language_validation

        s1, length = cfg.stage1, cfg.stage1_seq_len
        lang = language.prepare(s1.corpus, cfg.data, cache,
                                train_tokens=int(stage1_tokens(cfg) * 1.05) + length * 64,
                                val_tokens=s1.val_sequences * (length + 1) + length + 1, note=note,
                                tokenizer_corpus=cfg.data.corpus if cfg.keeps_embeddings else None)
        windows = val_batches(lang.val, length, s1.batch_size, s1.val_sequences * length)
        if not windows:
            raise NcalabError(f"stage1.corpus {s1.corpus} has too little held-out text for one sequence of "
                              f"{length} tokens; use a larger corpus or data.val_fraction")
        batches = LanguageBatches(TokenBatches(lang.train, length, s1.batch_size, seed=cfg.seed),
                                  *((world.rank, world.size) if world else (0, 1)))
        return Stage1Data(lang.vocab_size, batches, language_validation(windows))

    def in_context_eval(self, model, cfg, placement):
        return []  # held-out perplexity is the stage-1 validation loss already

    def sample(self, cfg, count=4):
        """The first `count` held-out sequences of stage1.corpus exactly as stage 1 reads them
        (its tokenizer, split and packing), prepared in a temporary folder: the BPE is trained
        again each time (about 5 s on the standard library), and nothing is cached."""
        import tempfile

        import numpy as np

        from ncalab.data.match import window_scores
        from ncalab.experiment import language

        length = cfg.stage1_seq_len
        with tempfile.TemporaryDirectory(prefix="ncalab-text-sample-") as cache:
            lang = language.prepare(cfg.stage1.corpus, cfg.data, Path(cache), train_tokens=1,
                                    val_tokens=count * length,
                                    tokenizer_corpus=cfg.data.corpus if cfg.keeps_embeddings else None)
            held_out = np.array(lang.val[: count * length], dtype=np.int64)  # a copy: the folder goes
        n = len(held_out) // length
        if n == 0:
            raise NcalabError(f"stage1.corpus {cfg.stage1.corpus} has too little held-out text for one "
                              f"sequence of {length} tokens")
        seqs = held_out[: n * length].reshape(n, length)
        window = cfg.nca.score_frames * cfg.nca.patches_per_frame  # as `ncalab match` scores a corpus
        return SourceSample(seqs, {"corpus": cfg.stage1.corpus, "distinct tokens": int(len(np.unique(seqs))),
                                   "vocabulary": lang.vocab_size,
                                   "gzip score": round(float(np.median(window_scores(seqs.ravel(), window))), 3)})


NCA, DYCK, SHUFFLE_DYCK, TEXT = NCASource(), DyckSource("dyck", False), DyckSource("shuffle_dyck", True), TextSource()
SOURCES = plugins.SOURCES  # name -> Source: the built-in ones and every installed plugin that loads


def rule_bank(cfg: ExperimentConfig) -> dict:
    """The indexed stream's block: with stage1.reuse = spread, the whole stage's rule bank
    (its sequences / nca.sims_per_rule rules), so each rule recurs once a pass over the bank,
    as in the paper's epochs; otherwise the stream's own small blocks."""
    if not cfg.spreads_rules:
        return {}
    s1 = cfg.stage1
    sequences = -(-stage1_tokens(cfg) // (s1.batch_size * cfg.stage1_seq_len)) * s1.batch_size
    return {"block_rules": max(1, -(-sequences // cfg.nca.sims_per_rule))}


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
