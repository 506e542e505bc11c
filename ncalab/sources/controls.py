"""Control sources: any stage-1 source with its structure taken away, to ask what of it helps.

- `shuffled`: the wrapped source's sequences, each with its tokens in a random order (the same
  tokens, so the same unigram statistics, and no order at all).
- `ngram`: sequences sampled from an n-gram model (order 1-3) fitted on the wrapped source's own
  training stream: its local statistics up to n tokens, and nothing longer.

Both keep the wrapped source's vocabulary, sequence length and loss mask (a masked position stays
masked), so the stage-1 model, its budget and its transfer are those of the wrapped source. Each
transformed sequence is a pure function of the seed and the wrapped sequence, so a resumed or
sharded run sees the same data. Declared with `--set stage1.source=shuffled --set shuffled.of=nca`
or `--set stage1.source=ngram --set ngram.of=nca --set ngram.order=2`.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ncalab.errors import NcalabError
from ncalab.lazy import torch
from ncalab.sources.interface import SOURCES, SourceSample, Stage1Data

IGNORE = -100  # a masked target (the trainer's ignore index)
WRAPPERS = ("shuffled", "ngram")
FIT_TOKENS = 1 << 18  # tokens of the wrapped stream an n-gram model is fitted on (or stage 1's, if fewer)


@dataclass
class ShuffledSettings:
    of: str = "nca"  # the source whose sequences are shuffled

    def validate(self, seq_len: int) -> None:
        _check_wrapped("shuffled", self.of)


@dataclass
class NgramSettings:
    of: str = "nca"  # the source the n-gram model is fitted on
    order: int = 2  # 1: unigram, 2: bigram, 3: trigram

    def validate(self, seq_len: int) -> None:
        _check_wrapped("ngram", self.of)
        if not 1 <= self.order <= 3:
            raise NcalabError(f"ngram.order must be 1, 2 or 3, got {self.order}")


def _check_wrapped(name: str, of: str) -> None:
    if of in WRAPPERS:
        raise NcalabError(f"{name}.of must be a source with data of its own, not the control {of!r}")
    if of not in SOURCES:
        raise NcalabError(f"{name}.of: unknown source {of!r}; choose from {', '.join(n for n in SOURCES if n not in WRAPPERS)}")


def sequence_key(seed: int, tokens: np.ndarray) -> list[int]:
    """The seed of one sequence's transformation: the run's seed and the sequence's content."""
    return [seed, zlib.crc32(np.ascontiguousarray(tokens, dtype=np.int64).tobytes())]


def shuffle_tokens(tokens: np.ndarray, seed: int) -> np.ndarray:
    """Each row's tokens in an order drawn from (seed, the row): a permutation of the row."""
    out = np.empty_like(tokens)
    for i, row in enumerate(tokens):
        out[i] = row[np.random.default_rng(sequence_key(seed, row)).permutation(len(row))]
    return out


class NgramModel:
    """Counts of each token after each context of order-1 tokens (-1 pads before a sequence's
    start, so the model also knows how sequences begin); sampling draws from those counts."""

    def __init__(self, order: int):
        self.order = order
        self.table: dict[tuple[int, ...], tuple[np.ndarray, np.ndarray]] = {}  # context -> (tokens, cumulative counts)

    def fit(self, seqs: np.ndarray) -> NgramModel:
        k = self.order - 1
        padded = np.concatenate([np.full((len(seqs), k), -1, dtype=np.int64), np.asarray(seqs, dtype=np.int64)], axis=1)
        windows = np.lib.stride_tricks.sliding_window_view(padded, k + 1, axis=1).reshape(-1, k + 1)
        grams, counts = np.unique(windows, axis=0, return_counts=True)  # sorted by context, then token
        contexts = [tuple(g) for g in grams[:, :k].tolist()]
        starts = [0] + [i for i in range(1, len(grams)) if contexts[i] != contexts[i - 1]] + [len(grams)]
        for a, b in zip(starts[:-1], starts[1:], strict=True):
            self.table[contexts[a]] = (grams[a:b, k].copy(), np.cumsum(counts[a:b]))
        return self

    def probabilities(self, context: tuple[int, ...]) -> dict[int, float]:
        tokens, cum = self.table[context]
        counts = np.diff(cum, prepend=0)
        return dict(zip(tokens.tolist(), (counts / cum[-1]).tolist(), strict=True))

    def sample(self, length: int, rng: np.random.Generator) -> np.ndarray:
        k, out = self.order - 1, np.empty(length, dtype=np.int64)
        context = (-1,) * k
        for t in range(length):
            tokens, cum = self.table.get(context) or self._unseen(context)
            out[t] = tokens[int(np.searchsorted(cum, rng.integers(cum[-1]), side="right"))]
            context = (*context[1:], int(out[t])) if k else ()
        return out

    def _unseen(self, context: tuple[int, ...]):
        """A context the fitted stream never showed (only possible after a sampled token that
        ended every fitted sequence): the shortest-context counts that exist, the unigram's last."""
        for cut in range(1, len(context) + 1):
            shorter = (-1,) * cut + context[cut:]
            if shorter in self.table:
                return self.table[shorter]
        raise NcalabError("the n-gram model has no counts to sample from")


def _sequences(inputs: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, targets) -> the (n, L + 1) sequences and where the targets are masked. A masked
    last target's token is not known: that row's last token is then its last input again."""
    last = np.where(targets[:, -1] == IGNORE, inputs[:, -1], targets[:, -1])
    return np.concatenate([inputs, last[:, None]], axis=1), targets == IGNORE


def _example(seqs: np.ndarray, masked: np.ndarray):
    targets = seqs[:, 1:].copy()
    targets[masked] = IGNORE
    return torch.from_numpy(np.ascontiguousarray(seqs[:, :-1])), torch.from_numpy(targets)


class TransformedBatches:
    """The wrapped stream's batches, each sequence transformed (shape and loss mask kept); the
    state is the wrapped stream's, as every transformation is a pure function of its sequence."""

    def __init__(self, inner, transform: Callable[[np.ndarray], np.ndarray]):
        self.inner, self.transform = inner, transform

    def next(self):
        inputs, targets = self.inner.next()
        seqs, masked = _sequences(inputs.numpy(), targets.numpy())
        return _example(self.transform(seqs), masked)

    def state_dict(self) -> dict:
        return self.inner.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.inner.load_state_dict(state)


class ControlSource:
    """A wrapper of any source; `kind` is shuffled or ngram (module docstring)."""

    in_context = False  # the wrapped source's task is what a control takes away

    def __init__(self, kind: str):
        self.name, self.kind = kind, kind
        self.label = "shuffled" if kind == "shuffled" else "n-gram"
        self.settings = ShuffledSettings if kind == "shuffled" else NgramSettings

    def section(self, cfg):
        return cfg.source_section(self.name)

    def wrapped(self, cfg):
        of = self.section(cfg).of
        _check_wrapped(self.name, of)
        return SOURCES[of]

    def vocab_size(self, cfg) -> int:
        return self.wrapped(cfg).vocab_size(cfg)

    def reuse_settings(self, cfg) -> dict:
        from dataclasses import asdict

        return {self.name: asdict(self.section(cfg)), "wrapped": self.wrapped(cfg).reuse_settings(cfg)}

    def transform(self, cfg, fit: Callable[[], np.ndarray]) -> Callable[[np.ndarray], np.ndarray]:
        """(n, L + 1) sequences -> their control; `fit` gives the wrapped source's training
        sequences an n-gram model is fitted on (called once, only by ngram)."""
        if self.kind == "shuffled":
            return lambda seqs: shuffle_tokens(seqs, cfg.seed)
        model = NgramModel(self.section(cfg).order).fit(fit())

        def sample(seqs: np.ndarray) -> np.ndarray:
            return np.stack([model.sample(seqs.shape[1], np.random.default_rng(sequence_key(cfg.seed, s)))
                             for s in seqs])
        return sample

    def open(self, cfg, cache: Path, note, world=None):
        inner = self.wrapped(cfg)
        data = inner.open(cfg, cache, note, world)

        def fit() -> np.ndarray:  # the wrapped stream's first sequences, from a stream of its own
            stream, rows, tokens = inner.open(cfg, cache, lambda _: None, None).batches, [], 0
            limit = min(FIT_TOKENS, cfg.stage1.tokens)
            while tokens < limit:
                seqs, _ = _sequences(*(t.numpy() for t in stream.next()))
                rows.append(seqs)
                tokens += seqs.size
            note(f"stage 1: an order-{self.section(cfg).order} n-gram model of {inner.name}, fitted on {tokens:,} tokens")
            return np.concatenate(rows)

        transform = self.transform(cfg, fit)
        validation = [_example(transform(s), m) for s, m in
                      (_sequences(i.numpy(), t.numpy()) for i, t in data.validation)]
        return Stage1Data(data.vocab_size, TransformedBatches(data.batches, transform), validation)

    def in_context_eval(self, model, cfg, placement) -> list[dict]:
        return []

    def sample(self, cfg, count: int = 4):
        inner = self.wrapped(cfg)
        if not hasattr(inner, "sample"):
            raise NcalabError(f"{inner.name} shows no sample, so its {self.name} control has none either")
        seqs = np.asarray(inner.sample(cfg, max(count, 64)).sequences)  # the n-gram model's fit: 64 sequences
        out = self.transform(cfg, lambda: seqs)(seqs[:count])
        return SourceSample(out, {"distinct tokens": int(len(np.unique(out))), "vocabulary": self.vocab_size(cfg),
                                  "wraps": inner.name})


SHUFFLED = ControlSource("shuffled")
NGRAM = ControlSource("ngram")
