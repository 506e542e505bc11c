"""Natural-language data of an experiment: corpus -> tokenizer -> token arrays, cached per
corpus, tokenizer and budget. Stage 2 reads the experiment's corpus; the text source of
stage 1 reads its own corpus with its own tokenizer, or with stage 2's when it keeps its
embeddings for stage 2 (transfer.embeddings = paper)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncalab.config import DataConfig
from ncalab.data.corpora import open_corpus
from ncalab.data.lm_data import build_token_arrays
from ncalab.data.tokenizer import get_tokenizer


@dataclass
class LanguageData:
    tokenizer: object  # a transformers tokenizer
    train: np.ndarray  # token ids, an end-of-text token after every document
    val: np.ndarray

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)


def prepare(corpus_spec: str, data: DataConfig, cache: Path, train_tokens: int, val_tokens: int, note=None,
            tokenizer_corpus: str | None = None) -> LanguageData:
    """``corpus_spec`` read with the experiment's tokenizer settings and held-out fraction
    (``data``; its own corpus is stage 2's). ``tokenizer_corpus``: read this corpus with the BPE
    trained on another one (a text source that shares stage 2's vocabulary)."""
    corpus = open_corpus(corpus_spec)
    if note is not None:
        note(f"corpus {corpus_spec}: preparing tokenizer and token arrays")
    tok_source = open_corpus(tokenizer_corpus) if tokenizer_corpus and not data.tokenizer else corpus
    tok, tok_id = get_tokenizer(tok_source, data.vocab_size, cache, data.val_fraction, data.tokenizer)
    train, val = build_token_arrays(corpus, tok, tok_id, cache, data.val_fraction, max_train_tokens=train_tokens,
                                    max_val_tokens=val_tokens)
    return LanguageData(tok, train, val)
