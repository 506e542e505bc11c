"""Batches of (inputs, targets) for each stage, resumable from a small state dict."""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable

import numpy as np
import torch

from ncalab.data.lm_data import take_in_epochs
from ncalab.errors import NcalabError
from ncalab.nca.bands import Band
from ncalab.nca.config import NCAConfig
from ncalab.nca.stream import FilteredSource
from ncalab.nca.tokens import IGNORE_INDEX, make_example


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
    """Batches of a stream in which sequence i is a pure function of i (Dyck, the addressable
    NCA stream, language windows). Each step takes the next `batch_size` sequences (the global
    batch); a process of a distributed run takes its own contiguous share of them. The state
    is one integer, the index of the next global batch's first sequence, so a run resumed on
    another number of processes continues the same stream."""

    def __init__(self, make: Callable[[int, int], np.ndarray], batch_size: int, rank: int = 0, world: int = 1,
                 example: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None):
        if batch_size % world:
            raise NcalabError(f"the batch of {batch_size} sequences does not split over {world} processes")
        self.make, self.batch_size, self.rank, self.world = make, batch_size, rank, world
        self.example = example  # (L + 1) tokens -> (inputs, targets); default: shift by one
        self.next_index = 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        share = self.batch_size // self.world
        seqs = np.ascontiguousarray(self.make(self.next_index + self.rank * share, share), dtype=np.int64)
        self.next_index += self.batch_size
        if self.example is not None:
            inputs, targets = self.example(seqs)
            return torch.from_numpy(inputs), torch.from_numpy(targets)
        t = torch.from_numpy(seqs)
        return t[:, :-1], t[:, 1:]

    def state_dict(self) -> dict:
        return {"next_index": self.next_index}

    def load_state_dict(self, state: dict) -> None:
        self.next_index = int(state["next_index"])


class Prefetcher:
    """Makes the next batches of a stream in a background thread while the model trains on
    the current one (the NCA engine, numba and zlib release the GIL), so a GPU does not wait
    for data. The same batches in the same order. Its state is the stream's state before the
    first batch not yet handed out, so a resumed run loses and repeats nothing."""

    def __init__(self, batches, depth: int = 2):
        self.batches = batches
        self._queue: queue.Queue = queue.Queue(maxsize=depth)  # (state before the batch, batch, error)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _produce(self) -> None:
        try:
            while not self._stop.is_set():
                item = (self.batches.state_dict(), self.batches.next(), None)
                while not self._stop.is_set():
                    try:
                        self._queue.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            self._queue.put((None, None, e))

    def next(self):
        if self._thread is None:
            self._thread = threading.Thread(target=self._produce, daemon=True, name="ncalab-prefetch")
            self._thread.start()
        _, batch, error = self._queue.get()
        if error is not None:
            raise error
        return batch

    def state_dict(self) -> dict:
        if self._thread is None:
            return self.batches.state_dict()
        while True:  # the producer always runs ahead: the next batch is queued or being made
            with self._queue.mutex:
                if self._queue.queue:
                    before, _, error = self._queue.queue[0]
                    if error is not None:
                        raise error
                    return before
            time.sleep(0.001)

    def load_state_dict(self, state: dict) -> None:
        self.close()
        self.batches.load_state_dict(state)

    def close(self) -> None:
        """Stop the producer and drop what it made ahead."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
            self._stop.clear()
        while not self._queue.empty():
            self._queue.get_nowait()


def fixed_batches(seqs: np.ndarray, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """(n, L + 1) held-out sequences -> validation batches of (inputs, targets)."""
    t = torch.from_numpy(np.ascontiguousarray(seqs, dtype=np.int64))
    return [(t[i : i + batch_size, :-1], t[i : i + batch_size, 1:]) for i in range(0, len(t), batch_size)]


class RowBatches:
    """Fine-tuning batches from fixed rows of (inputs, targets), loss-masked where targets are
    IGNORE_INDEX; epoch e visits the rows in the order default_rng((seed, e)).permutation."""

    def __init__(self, inputs: np.ndarray, targets: np.ndarray, batch_size: int, seed: int, rank: int = 0,
                 world: int = 1):
        self.inputs, self.targets = np.asarray(inputs, dtype=np.int64), np.asarray(targets, dtype=np.int64)
        self.batch_size, self.seed = batch_size, int(seed)
        self.rank, self.world = rank, world  # a process takes its share of every global batch
        self.epoch, self.index = 0, 0

    def next(self) -> tuple[torch.Tensor, torch.Tensor]:
        def order_of(epoch: int) -> np.ndarray:
            return np.random.default_rng((self.seed, epoch)).permutation(len(self.inputs))

        idx, self.epoch, self.index = take_in_epochs(order_of, self.epoch, self.index, self.batch_size)
        share = self.batch_size // self.world
        idx = idx[self.rank * share : (self.rank + 1) * share]
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


def pack_groups(groups: list[list[tuple[list[int], list[int]]]], length: int, eos: int,
                pad: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One row of `length` inputs and targets per group of (prompt ids, answer ids) examples,
    in the group's order, an end token after each answer; only answer tokens (and their end
    tokens) are targets. A group longer than a row is cut at the row's end."""
    if not groups:
        raise NcalabError("no fine-tuning examples")
    inputs = np.full((len(groups), length + 1), pad, dtype=np.int64)
    keep = np.zeros((len(groups), length + 1), dtype=bool)
    for r, group in enumerate(groups):
        seq = [t for prompt, answer in group for t in (*prompt, *answer, eos)][: length + 1]
        mask = [m for prompt, answer in group for m in [False] * len(prompt) + [True] * (len(answer) + 1)]
        inputs[r, : len(seq)], keep[r, : len(seq)] = seq, mask[: len(seq)]
    return inputs[:, :-1].copy(), np.where(keep[:, 1:], inputs[:, 1:], IGNORE_INDEX)


class LanguageBatches(IndexedBatches):
    """Language batches from a data.lm_data.TokenBatches stream: the same windows in the same
    order, in every process's share of each global batch. Resumes from checkpoints of either
    state format (one integer, or the older epoch and index)."""

    def __init__(self, token_batches, rank: int = 0, world: int = 1):
        super().__init__(token_batches.sequences, token_batches.batch_size, rank, world)
        self.stream = token_batches

    def load_state_dict(self, state: dict) -> None:
        if "next_index" not in state:  # written by ncalab 0.1: TokenBatches' own position
            self.stream.load_state_dict(state)
            state = {"next_index": self.stream.epoch * self.stream.windows_per_epoch + self.stream.index}
        super().load_state_dict(state)


def language_validation(windows: list[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(w[:, :-1], w[:, 1:]) for w in windows]
