"""The language tokenizer: a byte-level BPE trained on the corpus's training split (cached), or a
pretrained one by name.

Byte-level BPE never needs an unknown token and decodes back to the exact input text, so code and
math survive tokenization unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

from ncalab.data.corpora import Corpus, is_validation
from ncalab.errors import NcalabError
from ncalab.lazy import tokenizers, transformers

EOT = "<|endoftext|>"
MIN_VOCAB = 257  # 256 byte symbols + the end-of-text token
MAX_VOCAB = 1 << 20
_FORMAT = "ncalab-bpe-v1"


def train_bpe(texts: Iterable[str], vocab_size: int):
    """Train a byte-level BPE on `texts` (pass the training split only) and wrap it as a
    `transformers.PreTrainedTokenizerFast` whose eos/bos/pad token is <|endoftext|> (id 0)."""
    if not MIN_VOCAB <= vocab_size <= MAX_VOCAB:
        raise NcalabError(f"vocab size must be in [{MIN_VOCAB}, {MAX_VOCAB}], got {vocab_size}; pass e.g. --vocab-size 8192")
    tok = tokenizers.Tokenizer(tokenizers.models.BPE())
    tok.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOT],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, even unseen ones
        show_progress=False,
    )
    tok.train_from_iterator(_batched(texts, 1000), trainer=trainer)
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=tok,
        eos_token=EOT,
        bos_token=EOT,
        pad_token=EOT,
        clean_up_tokenization_spaces=False,  # keep decode(encode(text)) == text
    )


def _batched(texts: Iterable[str], n: int) -> Iterator[list[str]]:
    batch: list[str] = []
    for t in texts:
        batch.append(t)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


def training_texts(corpus: Corpus, val_fraction: float, max_chars: int) -> Iterator[str]:
    """Training-split documents of `corpus`, at most `max_chars` characters in all (the last one cut)."""
    left = max_chars
    for text in corpus.iter_texts():
        if left <= 0:
            return
        if is_validation(text, val_fraction):
            continue
        yield text[:left]
        left -= len(text)


def get_tokenizer(corpus: Corpus, vocab_size: int, cache_dir: str | os.PathLike, val_fraction: float,
                  tokenizer_name: str | None = None, max_train_chars: int = 50_000_000):
    """Return (tokenizer, tokenizer_id). With `tokenizer_name`, load that pretrained tokenizer;
    otherwise train a BPE on the corpus's training split, cached under cache_dir/tokenizers/<key>/
    (the key covers the corpus id, vocab size, val fraction and character budget)."""
    if tokenizer_name:
        return pretrained_tokenizer(tokenizer_name)
    if max_train_chars <= 0:
        raise NcalabError(f"tokenizer training budget must be positive, got {max_train_chars} characters")
    is_validation("", val_fraction)  # checks the fraction before any work
    key_src = json.dumps([_FORMAT, corpus.id, int(vocab_size), float(val_fraction), int(max_train_chars)])
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    tok_id = f"bpe-{key}"
    folder = Path(cache_dir) / "tokenizers" / key
    if (folder / "ncalab.json").exists():
        try:
            return transformers.PreTrainedTokenizerFast.from_pretrained(str(folder)), tok_id
        except Exception:  # a damaged cache entry: train it again below
            shutil.rmtree(folder, ignore_errors=True)

    seen = [0]

    def counted():
        for text in training_texts(corpus, val_fraction, max_train_chars):
            seen[0] += 1
            yield text

    tok = train_bpe(counted(), vocab_size)
    if not seen[0]:
        raise NcalabError(f"corpus {corpus.spec} gave no training text for the tokenizer; it needs more documents "
                          "or a smaller val fraction")
    _save_atomic(tok, folder, key_src)
    return tok, tok_id


def _save_atomic(tok, folder: Path, key_src: str) -> None:
    """Write into a temporary sibling folder and rename it, so a crash never leaves half a cache."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        tok.save_pretrained(str(tmp))
        (tmp / "ncalab.json").write_text(key_src + "\n")  # marks a complete entry, records its key
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError as e:
        raise NcalabError(f"cannot write the tokenizer cache under {folder.parent}: {e.strerror or e}") from None


def pretrained_tokenizer(name: str):
    """(tokenizer, id) of a transformers tokenizer, from the local cache when offline."""
    # huggingface_hub reads HF_HUB_OFFLINE only at import; honour it here too, so an offline run
    # fails at once (or uses the local cache) instead of retrying the network for a minute.
    offline = any(os.environ.get(v, "").strip().lower() in ("1", "true", "yes", "on")
                  for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    try:
        tok = transformers.AutoTokenizer.from_pretrained(name, local_files_only=offline)
    except Exception:
        raise NcalabError(f"cannot load tokenizer {name!r} (offline?); omit --tokenizer to train a BPE on the corpus") from None
    if tok.eos_token_id is None:
        raise NcalabError(f"tokenizer {name!r} has no end-of-text token; omit --tokenizer to train a BPE on the corpus")
    # The id names the tokenizer and hashes its vocabulary, so a changed local tokenizer is a new id.
    backend = getattr(tok, "backend_tokenizer", None)
    content = backend.to_str() if backend is not None else json.dumps(tok.get_vocab(), sort_keys=True)
    digest = hashlib.sha256(content.encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "-" for c in name)
    return tok, f"pretrained-{safe}-{digest}"
