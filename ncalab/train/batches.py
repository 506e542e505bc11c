"""Batches of (inputs, targets) for each stage, resumable from a small state dict."""

from __future__ import annotations

import numpy as np
import torch

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
