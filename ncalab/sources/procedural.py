"""The procedural sources of Jiang et al. 2026 (ncalab.data.procedural; docs/method.md, section
13): identity, reverse, sort, set, union, delete and stack, each with the sequence format,
input length and vocabulary of the paper's configs as its defaults. The loss is on the output
tokens of each example only, as the paper's: the other targets are IGNORE (-100)."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from ncalab.config.sections import option, section
from ncalab.data.procedural import MIN_LENGTH, block_size, output_keep, output_start, procedural_sequences
from ncalab.lazy import torch
from ncalab.sources.interface import Stage1Data
from ncalab.sources.sequence import SequenceSource
from ncalab.train.batches import IndexedBatches

IGNORE = -100  # a target without loss (the trainer's ignore index)
MAX_VOCAB = 1 << 16
MAX_LENGTH = 4096


@section
class ProceduralSettings:
    """A procedural source's settings (config section: the source's name); the defaults are the
    paper's (procedural_pretraining/configs/TASK.yaml: vocab_size 100, seq_length 64)."""

    vocab_size: int = option(100, "the paper's vocab_size V: input tokens are 1..V-1, V the separator, V+1 the "
                                  "pad, so the model's vocabulary is V+2 (paper: 100)")
    length: int = option(64, "input tokens of each example, the paper's seq_length (union: two halves of "
                             "length/2); examples follow one another in a sequence (paper: 64)")
    task: ClassVar[str] = "?"

    def validate(self, seq_len: int) -> None:
        """One line (ValueError) for settings outside their range, or examples whose output a stage-1
        sequence cannot reach (an example longer than a sequence is cut at the sequence's end)."""
        low = MIN_LENGTH.get(self.task, 1)
        if not 3 <= self.vocab_size <= MAX_VOCAB:
            raise ValueError(f"vocab_size must be in [3, {MAX_VOCAB}], got {self.vocab_size}")
        if not low <= self.length <= MAX_LENGTH:
            raise ValueError(f"length must be in [{low}, {MAX_LENGTH}], got {self.length}")
        start = output_start(self.task, self.length)
        if seq_len is not None and start >= seq_len + 1:  # a longer example is cut, as every sequence's last
            raise ValueError(f"an example of length {self.length} has its output from token {start + 1} on; a "
                             f"stage-1 sequence holds {seq_len + 1} (nca.seq_len + 1): lower {self.task}.length "
                             f"or raise nca.seq_len")


class IdentitySettings(ProceduralSettings):
    task = "identity"


class ReverseSettings(ProceduralSettings):
    task = "reverse"


class SortSettings(ProceduralSettings):
    task = "sort"


class SetSettings(ProceduralSettings):
    task = "set"


class UnionSettings(ProceduralSettings):
    task = "union"


class DeleteSettings(ProceduralSettings):
    task = "delete"


class StackSettings(ProceduralSettings):
    task = "stack"


class ProceduralSource(SequenceSource):
    """One task of ncalab.data.procedural; the source's name is the task's."""

    def __init__(self, settings: type[ProceduralSettings], label: str):
        self.name, self.settings, self.label = settings.task, settings, label

    def vocab_size(self, cfg):
        return self.section(cfg).vocab_size + 2

    def sequences(self, cfg, split, start, count, length):
        s = self.section(cfg)
        return procedural_sequences(self.name, s.length, s.vocab_size, cfg.seed, split, start, count, length)

    def example(self, cfg, seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(n, L + 1) sequences -> (inputs, targets) with IGNORE where a target is not an output token."""
        s = self.section(cfg)
        seqs = np.asarray(seqs, dtype=np.int64)
        keep = output_keep(self.name, s.length, s.vocab_size, seqs)
        return seqs[:, :-1].copy(), np.where(keep, seqs[:, 1:], IGNORE)

    def open(self, cfg, cache, note, world=None):
        s1 = cfg.stage1
        inputs, targets = self.example(cfg, self._make(cfg, "val")(0, s1.val_sequences))  # masked like training
        validation = [(torch.from_numpy(inputs[i : i + s1.batch_size]), torch.from_numpy(targets[i : i + s1.batch_size]))
                      for i in range(0, len(inputs), s1.batch_size)]
        rank, size = (world.rank, world.size) if world else (0, 1)
        batches = IndexedBatches(self._make(cfg, "train"), s1.batch_size, rank, size,
                                 example=lambda seqs: self.example(cfg, seqs))
        return Stage1Data(self.vocab_size(cfg), batches, validation)

    def statistics(self, cfg, seqs, start=0):
        s = self.section(cfg)
        keep = output_keep(self.name, s.length, s.vocab_size, seqs)
        return {**super().statistics(cfg, seqs, start), "example tokens": block_size(self.name, s.length),
                "trained targets": round(float(keep.mean()), 3)}


IDENTITY = ProceduralSource(IdentitySettings, "identity (copy)")
REVERSE = ProceduralSource(ReverseSettings, "reverse")
SORT = ProceduralSource(SortSettings, "sort")
SET = ProceduralSource(SetSettings, "set (first occurrences)")
UNION = ProceduralSource(UnionSettings, "union")
DELETE = ProceduralSource(DeleteSettings, "delete")
STACK = ProceduralSource(StackSettings, "stack")
