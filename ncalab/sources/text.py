"""The `text` source: natural text as pre-pre-training, the paper's C4 control."""

from __future__ import annotations

import tempfile
from pathlib import Path

from ncalab.data import language
from ncalab.data.lm_data import TokenBatches, val_batches
from ncalab.data.match import window_scores
from ncalab.data.tokenizer import pretrained_tokenizer
from ncalab.errors import NcalabError
from ncalab.lazy import np
from ncalab.sources.interface import SourceSample, Stage1Data, stage1_tokens
from ncalab.train.batches import LanguageBatches, language_validation


class TextSource:
    """Natural text as pre-pre-training (the paper's C4 control): its own corpus and tokenizer
    (data.tokenizer when set, else a BPE of data.vocab_size trained on this corpus, or on stage
    2's corpus when its embeddings carry over, transfer.embeddings = paper)."""

    name, label, in_context = "text", "text", False
    # it needs a corpus: the TUI shows it on the standard library, the corpus every machine has
    sample_settings = ("stage1.corpus=python-stdlib",)

    def vocab_size(self, cfg):
        if cfg.data.tokenizer:
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


TEXT = TextSource()
