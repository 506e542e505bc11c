"""Batches of (inputs, targets) for each stage, resumable from a small state dict."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from ncalab.errors import NcalabError
from ncalab.nca.bands import Band
from ncalab.nca.config import NCAConfig
from ncalab.nca.stream import FilteredSource
from ncalab.nca.tokens import make_example


class NCABatches:
    """Stage-1 training batches: fresh in-band rules, one sequence per rule, loss-masked.

    State = (index of the next candidate batch, sequences already taken from the current one),
    so a resumed run regenerates exactly the sequences it would have seen.
    """

    def __init__(self, cfg: NCAConfig, band: Band, seed: int, batch_size: int, split: str = "train",
                 batch_rules: int = 2048):
        self.cfg, self.batch_size = cfg, batch_size
        self.source = FilteredSource(cfg, band, seed, split, batch_rules=batch_rules)
        self._current: np.ndarray | None = None
        self._offset = 0

    def _refill(self) -> None:
        self._current = self.source.next_batch().tokens
        self._offset = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        rows = []
        need = self.batch_size
        while need:
            if self._current is None or self._offset >= len(self._current):
                self._refill()
                continue
            take = min(need, len(self._current) - self._offset)
            rows.append(self._current[self._offset : self._offset + take])
            self._offset += take
            need -= take
        seqs = np.concatenate(rows).astype(np.int64)
        inputs, labels = make_example(seqs, self.cfg)
        return torch.from_numpy(inputs), torch.from_numpy(labels)

    def state_dict(self) -> dict:
        # the batch in hand was produced by index next_batch_index - 1
        return {"next_batch_index": self.source.next_batch_index - (self._current is not None),
                "offset": self._offset if self._current is not None else 0}

    def load_state_dict(self, state: dict) -> None:
        self.source.next_batch_index = int(state["next_batch_index"])
        self._current = None
        if state["offset"]:
            self._refill()
            self._offset = int(state["offset"])


def nca_validation(cfg: NCAConfig, band: Band, seed: int, n_sequences: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Fixed validation batches from held-out rules (the 'val' split of the stream)."""
    src = FilteredSource(cfg, band, seed, "val", batch_rules=512)
    seqs = []
    while sum(len(s) for s in seqs) < n_sequences:
        seqs.append(src.next_batch(src.candidates_for(n_sequences - sum(len(s) for s in seqs))).tokens)
    allseq = np.concatenate(seqs)[:n_sequences].astype(np.int64)
    inputs, labels = make_example(allseq, cfg)
    return [(torch.from_numpy(inputs[i : i + batch_size]), torch.from_numpy(labels[i : i + batch_size]))
            for i in range(0, len(allseq), batch_size)]


class IndexedBatches:
    """Batches of a stream in which sequence i is a pure function of i (Dyck sources): the
    state is one integer, the index of the next sequence."""

    def __init__(self, make: Callable[[int, int], np.ndarray], batch_size: int):
        self.make, self.batch_size = make, batch_size  # make(start, count) -> (count, L + 1) tokens
        self.next_index = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        seqs = torch.from_numpy(np.ascontiguousarray(self.make(self.next_index, self.batch_size), dtype=np.int64))
        self.next_index += self.batch_size
        return seqs[:, :-1], seqs[:, 1:]

    def state_dict(self) -> dict:
        return {"next_index": self.next_index}

    def load_state_dict(self, state: dict) -> None:
        self.next_index = int(state["next_index"])


def fixed_batches(seqs: np.ndarray, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(n, L + 1) held-out sequences -> validation batches of (inputs, targets)."""
    t = torch.from_numpy(np.ascontiguousarray(seqs, dtype=np.int64))
    return [(t[i : i + batch_size, :-1], t[i : i + batch_size, 1:]) for i in range(0, len(t), batch_size)]


class RowBatches:
    """Fine-tuning batches from fixed rows of (inputs, targets), loss-masked where targets are
    IGNORE_INDEX; epoch e visits the rows in the order default_rng((seed, e)).permutation."""

    def __init__(self, inputs: np.ndarray, targets: np.ndarray, batch_size: int, seed: int):
        self.inputs, self.targets = np.asarray(inputs, dtype=np.int64), np.asarray(targets, dtype=np.int64)
        self.batch_size, self.seed = batch_size, int(seed)
        self.epoch, self.index = 0, 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        from ncalab.data.lm_data import take_in_epochs

        def order_of(epoch: int) -> np.ndarray:
            return np.random.default_rng((self.seed, epoch)).permutation(len(self.inputs))

        idx, self.epoch, self.index = take_in_epochs(order_of, self.epoch, self.index, self.batch_size)
        return torch.from_numpy(self.inputs[idx]), torch.from_numpy(self.targets[idx])

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "index": self.index, "rows": len(self.inputs)}

    def load_state_dict(self, state: dict) -> None:
        if int(state.get("rows", -1)) != len(self.inputs):
            raise NcalabError("cannot resume fine-tuning: its data changed since the checkpoint")
        self.epoch, self.index = int(state["epoch"]), int(state["index"])


def pack_examples(examples: list[tuple[list[int], list[int]]], length: int, eos: int,
                  pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Pack (prompt ids, answer ids) examples into rows of `length` inputs and targets, several
    examples per row, an end token after each answer; only answer tokens (and their end token)
    are targets, so the loss never covers prompts. An example longer than a row is cut."""
    from ncalab.nca.tokens import IGNORE_INDEX

    rows_in, rows_tg = [], []
    seq: list[int] = []
    mask: list[bool] = []

    def flush():
        if len(seq) > 1:
            ids = np.full(length + 1, pad, dtype=np.int64)
            keep = np.zeros(length + 1, dtype=bool)
            n = min(len(seq), length + 1)
            ids[:n], keep[:n] = seq[:n], mask[:n]
            tg = np.where(keep[1:], ids[1:], IGNORE_INDEX)
            rows_in.append(ids[:-1])
            rows_tg.append(tg)
        seq.clear()
        mask.clear()

    for prompt, answer in examples:
        ex = list(prompt) + list(answer) + [eos]
        ex_mask = [False] * len(prompt) + [True] * (len(answer) + 1)
        if seq and len(seq) + len(ex) > length + 1:
            flush()
        seq.extend(ex)
        mask.extend(ex_mask)
    flush()
    if not rows_in:
        raise NcalabError("no fine-tuning examples")
    return np.stack(rows_in), np.stack(rows_tg)


class LanguageBatches:
    """Stage-2 batches from a data.lm_data.TokenBatches stream: inputs and next-token targets."""

    def __init__(self, token_batches):
        self.stream = token_batches
        self._it = iter(token_batches)

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        b = next(self._it)
        return b[:, :-1], b[:, 1:]

    def state_dict(self) -> dict:
        return self.stream.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state)
        self._it = iter(self.stream)


def language_validation(windows: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(w[:, :-1], w[:, 1:]) for w in windows]
