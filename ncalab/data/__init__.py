"""Natural-language side of the lab: corpora, the tokenizer, and token batches for training.

Names are imported lazily so that `import ncalab.data.corpora` does not pull in torch/transformers.
"""

from importlib import import_module

_WHERE = {
    "DEFAULT_CORPORA": "corpora",
    "Corpus": "corpora",
    "is_validation": "corpora",
    "open_corpus": "corpora",
    "get_tokenizer": "tokenizer",
    "train_bpe": "tokenizer",
    "TokenBatches": "lm_data",
    "build_token_arrays": "lm_data",
    "val_batches": "lm_data",
}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    if name in _WHERE:
        return getattr(import_module(f"ncalab.data.{_WHERE[name]}"), name)
    raise AttributeError(f"module 'ncalab.data' has no attribute {name!r}")
