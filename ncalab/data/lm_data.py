"""Token arrays for language training: tokenize a corpus once (cached as .npy), then serve
fixed-length windows in a seeded order.

Every model trained with the same data arguments sees the same batches in the same order (the
NCA-initialised model and the scratch baseline differ only in their initial weights), and a resumed
run continues from the exact batch it stopped at.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import torch

from ncalab.data.corpora import Corpus, is_validation
from ncalab.errors import NcalabError

_FORMAT = "ncalab-lm-tokens-v1"
_BATCH_CHARS = 1 << 21  # tokenize about 2M characters per call: batched calls are much faster
_BATCH_DOCS = 1024


def token_dtype(vocab_size: int) -> np.dtype:
    """The smallest array dtype that holds every token id."""
    return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


def _check_budget(name: str, value: int | None) -> float:
    if value is None:
        return math.inf
    if value <= 0:
        raise NcalabError(f"{name} must be positive, got {value}")
    return value


def build_token_arrays(corpus: Corpus, tokenizer, tokenizer_id: str, cache_dir: str | os.PathLike,
                       val_fraction: float, max_train_tokens: int | None, max_val_tokens: int | None,
                       progress: Callable[[int, int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Tokenize `corpus` into (train, val) 1-D arrays, an eos token after every document, each
    document routed by `is_validation`; reading stops once both budgets are met (None = no limit).
    Cached under cache_dir/tokens/<key>/; `progress(train_tokens, val_tokens)` is called per batch."""
    budget = {False: _check_budget("max train tokens", max_train_tokens),
              True: _check_budget("max val tokens", max_val_tokens)}
    is_validation("", val_fraction)  # checks the fraction before any work
    key_src = json.dumps([_FORMAT, corpus.id, tokenizer_id, float(val_fraction), max_train_tokens, max_val_tokens])
    key = hashlib.sha256(key_src.encode()).hexdigest()[:20]
    folder = Path(cache_dir) / "tokens" / key
    cached = _load_cached(folder)
    if cached is not None:
        return cached

    eos = tokenizer.eos_token_id
    if eos is None:
        raise NcalabError(f"tokenizer {tokenizer_id} has no end-of-text token; omit --tokenizer to train a BPE")
    splits = _Splits(budget, eos, token_dtype(len(tokenizer)))
    _read_corpus(corpus, tokenizer, val_fraction, splits, progress)
    if not splits.count[False]:
        raise NcalabError(f"corpus {corpus.spec} gave no training documents; it needs more documents "
                          "or a smaller val fraction")
    if not splits.count[True]:
        raise NcalabError(f"corpus {corpus.spec} gave no validation documents; it needs more documents "
                          "or a larger val fraction")
    train, val = splits.arrays()
    meta = {"key": json.loads(key_src), "train_tokens": len(train), "val_tokens": len(val),
            "train_docs": splits.docs[False], "val_docs": splits.docs[True], "dtype": splits.dtype.name}
    _save_atomic(folder, train, val, meta)
    return train, val


def _load_cached(folder: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """The (train, val) arrays of a complete cache entry, memory-mapped; None when there is none."""
    if not (folder / "meta.json").exists():
        return None
    try:
        return (np.load(folder / "train.npy", mmap_mode="r", allow_pickle=False),
                np.load(folder / "val.npy", mmap_mode="r", allow_pickle=False))
    except (OSError, ValueError):  # a damaged cache entry: the caller rebuilds it
        shutil.rmtree(folder, ignore_errors=True)
        return None


class _Splits:
    """The tokenized documents of each split (keyed by is_validation: False = train, True = val),
    each split taking documents until its token budget is met."""

    def __init__(self, budget: dict[bool, float], eos: int, dtype: np.dtype):
        self.budget, self.eos, self.dtype = budget, eos, dtype
        self.chunks: dict[bool, list[np.ndarray]] = {False: [], True: []}
        self.count = {False: 0, True: 0}
        self.docs = {False: 0, True: 0}

    def wants(self, val: bool) -> bool:
        return self.count[val] < self.budget[val]

    def full(self) -> bool:
        return not self.wants(False) and not self.wants(True)

    def add(self, val: bool, doc_ids: list[int]) -> None:
        arr = np.empty(len(doc_ids) + 1, dtype=self.dtype)
        arr[:-1] = doc_ids
        arr[-1] = self.eos
        self.chunks[val].append(arr)
        self.count[val] += len(arr)
        self.docs[val] += 1

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        return (_concat(self.chunks[False], self.budget[False], self.dtype),
                _concat(self.chunks[True], self.budget[True], self.dtype))


def _read_corpus(corpus: Corpus, tokenizer, val_fraction: float, splits: _Splits,
                 progress: Callable[[int, int], None] | None) -> None:
    """Tokenize the corpus's documents into `splits` in batches, until both budgets are met."""
    batch: list[str] = []
    chars = 0
    for text in corpus.iter_texts():
        batch.append(text)
        chars += len(text)
        if chars >= _BATCH_CHARS or len(batch) >= _BATCH_DOCS:
            _tokenize_batch(batch, tokenizer, val_fraction, splits, progress)
            batch, chars = [], 0
            if splits.full():
                break  # both budgets met: never read a huge corpus to its end
    else:
        _tokenize_batch(batch, tokenizer, val_fraction, splits, progress)


def _tokenize_batch(batch: list[str], tokenizer, val_fraction: float, splits: _Splits,
                    progress: Callable[[int, int], None] | None) -> None:
    # Only documents whose split still needs tokens are tokenized.
    routed = [(t, v) for t, v in ((t, is_validation(t, val_fraction)) for t in batch) if splits.wants(v)]
    if not routed:
        return
    # split_special_tokens: a literal "<|endoftext|>" inside a document is text, not a boundary.
    ids = tokenizer([t for t, _ in routed], add_special_tokens=False, split_special_tokens=True,
                    return_attention_mask=False)["input_ids"]
    for (_, v), doc_ids in zip(routed, ids):
        if splits.wants(v):
            splits.add(v, doc_ids)
    if progress is not None:
        progress(splits.count[False], splits.count[True])


def _concat(chunks: list[np.ndarray], budget: float, dtype: np.dtype) -> np.ndarray:
    arr = np.concatenate(chunks) if chunks else np.empty(0, dtype=dtype)
    return arr[: int(budget)] if budget < len(arr) else arr  # the last document may be cut


def _save_atomic(folder: Path, train: np.ndarray, val: np.ndarray, meta: dict) -> None:
    """Write into a temporary sibling folder and rename it, so a crash never leaves half a cache."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
        np.save(tmp / "train.npy", train)
        np.save(tmp / "val.npy", val)
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1) + "\n")  # written last: marks it complete
        if folder.exists():
            shutil.rmtree(folder, ignore_errors=True)
        os.replace(tmp, folder)
    except OSError as e:
        raise NcalabError(f"cannot write the token cache under {folder.parent}: {e.strerror or e}") from None


def _windows(tokens: np.ndarray, seq_len: int, what: str) -> np.ndarray:
    """View `tokens` as (n, seq_len + 1) non-overlapping windows (the tail that does not fill one is dropped)."""
    if seq_len < 1:
        raise NcalabError(f"sequence length must be at least 1, got {seq_len}")
    w = seq_len + 1
    n = len(tokens) // w
    if n == 0:
        raise NcalabError(f"the {what} split has {len(tokens)} tokens, fewer than one window of {w}; "
                          "use more data or a shorter --seq-len")
    return np.asarray(tokens)[: n * w].reshape(n, w)


def take_in_epochs(order_of: Callable[[int], np.ndarray], epoch: int, index: int, count: int) -> tuple[np.ndarray, int, int]:
    """The next `count` items of a stream that visits every item once per epoch in
    `order_of(epoch)`: (their indices, and the new epoch and index)."""
    picks = []
    while count:
        order = order_of(epoch)
        take = order[index: index + count]
        picks.append(take)
        count -= len(take)
        index += len(take)
        if index == len(order):
            epoch, index = epoch + 1, 0
    return np.concatenate(picks), epoch, index


class TokenBatches:
    """Endless training batches: (batch_size, seq_len + 1) LongTensors of non-overlapping windows.

    Epoch e visits every window once, in the order `default_rng((seed, e)).permutation`; a batch that
    runs past the end of an epoch continues with the next one. Same arguments, same batches."""

    def __init__(self, tokens: np.ndarray, seq_len: int, batch_size: int, seed: int):
        if batch_size < 1:
            raise NcalabError(f"batch size must be at least 1, got {batch_size}")
        self.windows = _windows(tokens, seq_len, "training")
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, int(seed)
        self.epoch, self.index = 0, 0  # position: the next window is order(epoch)[index]
        self._order_epoch, self._order = -1, None

    @property
    def windows_per_epoch(self) -> int:
        return len(self.windows)

    def _order_of(self, epoch: int) -> np.ndarray:
        if epoch != self._order_epoch:
            self._order = np.random.default_rng((self.seed, epoch)).permutation(len(self.windows))
            self._order_epoch = epoch
        return self._order

    def __iter__(self) -> Iterator[torch.Tensor]:
        return self

    def __next__(self) -> torch.Tensor:
        idx, self.epoch, self.index = take_in_epochs(self._order_of, self.epoch, self.index, self.batch_size)
        return torch.from_numpy(self.windows[idx].astype(np.int64))

    def sequences(self, start: int, count: int) -> np.ndarray:
        """Windows start .. start+count-1 of the endless stream (window g is order(g // n)[g % n]),
        so any process can take any range of it."""
        epoch, pos = np.divmod(np.arange(start, start + count, dtype=np.int64), len(self.windows))
        rows = np.empty(count, dtype=np.int64)
        for e in np.unique(epoch):
            sel = epoch == e
            rows[sel] = self._order_of(int(e))[pos[sel]]
        return self.windows[rows].astype(np.int64)

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "seed": self.seed, "seq_len": self.seq_len,
                "batch_size": self.batch_size, "windows": len(self.windows)}

    def load_state_dict(self, state: dict) -> None:
        mine = self.state_dict()
        for k in ("seed", "seq_len", "windows"):
            if state.get(k) != mine[k]:
                raise NcalabError(f"cannot resume the data stream: {k} was {state.get(k)}, now {mine[k]}; "
                                  "resume with the same corpus, tokenizer and data settings")
        if not (0 <= int(state["index"]) < len(self.windows) and int(state["epoch"]) >= 0):
            raise NcalabError("cannot resume the data stream: its saved position is out of range")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


def val_batches(tokens: np.ndarray, seq_len: int, batch_size: int, max_tokens: int | None) -> list[torch.Tensor]:
    """The held-out evaluation set: ordered, non-overlapping windows of seq_len + 1 from the start of
    `tokens`, covering at most `max_tokens` (None = all), in batches of `batch_size` (the last may be smaller)."""
    if batch_size < 1:
        raise NcalabError(f"batch size must be at least 1, got {batch_size}")
    if max_tokens is not None:
        tokens = tokens[: max(0, int(max_tokens))]
    windows = _windows(tokens, seq_len, "validation")
    return [torch.from_numpy(windows[i: i + batch_size].astype(np.int64)) for i in range(0, len(windows), batch_size)]
