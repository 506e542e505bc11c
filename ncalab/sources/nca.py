"""The `nca` source: the paper's NCA sequences, streamed from the engine or read from a stored corpus."""

from __future__ import annotations

from pathlib import Path

from ncalab.config.stored import without_added
from ncalab.errors import NcalabError
from ncalab.evaluation.incontext import nca_in_context
from ncalab.lazy import torch
from ncalab.nca import strip
from ncalab.nca.config import NCAConfig
from ncalab.nca.indexed import IndexedNCAStream
from ncalab.nca.stored import is_nca_corpus, open_stored
from ncalab.nca.tokens import make_example
from ncalab.sources.interface import SourceSample, Stage1Data, rule_bank, stage1_tokens
from ncalab.train.batches import IndexedBatches, NCABatches, nca_validation


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
        seqs = IndexedNCAStream(cfg.nca, cfg.band(), cfg.seed, "val").sequences(0, count)[0]
        return SourceSample(seqs, {"distinct tokens": int(len(set(seqs.ravel().tolist()))),
                                   "vocabulary": cfg.nca.vocab_size})

    def rules_of(self, cfg):
        """The NCA settings and band of the rules stage 1 reads (a stored corpus's own)."""
        corpus = self.stored(cfg)
        return (corpus.cfg, corpus.band or cfg.band()) if corpus else (cfg.nca, cfg.band())

    def in_context_eval(self, model, cfg, placement):
        nca, band = self.rules_of(cfg)
        return nca_in_context(model, nca, band, cfg.seed, cfg.stage1.icl_sequences, placement)

    def save_exhibit(self, cfg, folder: Path) -> None:
        """A few of the rules it trained on, with frames, for the report (ncalab.nca.strip)."""
        nca, band = self.rules_of(cfg)
        strip.save(folder, strip.first_rules(nca, band, cfg.seed))


NCA = NCASource()
