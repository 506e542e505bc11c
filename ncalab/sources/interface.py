"""The interface every stage-1 source keeps, and SOURCES, the registry of them by name.

Every source is an entry point of the group `ncalab.sources` (ncalab.plugins): the built-in
ones of this package (nca.py, dyck.py, text.py, eca.py, ww.py, controls.py) and any installed
plugin. SOURCES maps a name to its source, imported on first use. Each has the same small
interface (Source, below; the whole of it in docs/sources.md): its vocabulary, the settings
that determine its data (for reuse keys), its training stream and held-out sequences, an
optional in-context evaluation of the stage-1 model and an optional sample for the front ends.
Transfer treats every source alike: its embedding and head are replaced by fresh ones for the
language vocabulary. A new source is a new entry point, not a branch in the pipeline.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast

from ncalab import plugins
from ncalab.config import ExperimentConfig
from ncalab.planning.compute import model_compute

if TYPE_CHECKING:
    import numpy as np


@dataclass
class SourceSample:
    """What a front end shows of a source: a few sequences, the source's own statistics of them
    and, where the source has one, a 2-D picture (the ECA's space-time grid of the first)."""

    sequences: np.ndarray  # (count, length) token ids
    stats: dict = field(default_factory=dict)  # name -> number or short text, the source's choice
    grid: np.ndarray | None = None  # (rows, columns) of small integers, or None


@dataclass
class Stage1Data:
    vocab_size: int
    batches: object  # next() -> (inputs, targets), state_dict(), load_state_dict()
    validation: list  # [(inputs, targets)] of held-out sequences


class Source(Protocol):
    name: str  # its entry-point name, the value of stage1.source
    label: str  # a few words for tables and logs
    in_context: bool  # whether in_context_eval measures anything for this source
    settings: type | None  # optional: a dataclass, the config section `name` (validate(seq_len) checks it)

    def vocab_size(self, cfg: ExperimentConfig) -> int:
        """Its token ids are 0..vocab_size-1; the vocabulary also sets what a token costs (the
        output head's FLOPs: stage1.match = flops compares sources by it)."""
    def reuse_settings(self, cfg: ExperimentConfig) -> dict: ...
    def open(self, cfg: ExperimentConfig, cache: Path, note: Callable[[str], None], world=None) -> Stage1Data:
        """The training stream (this process's share of every global batch) and held-out batches."""
    def in_context_eval(self, model, cfg: ExperimentConfig, placement) -> list[dict]: ...
    # optional: sample(cfg, count) -> SourceSample, what `ncalab sources` and the TUI show
    # optional: sample_settings, ("KEY=VALUE", ...) the TUI shows it with when nothing else is set
    # optional: save_exhibit(cfg, folder), files beside the stage-1 model that `ncalab report` shows


# name -> Source: the built-in ones and every installed plugin that loads (the registry checks
# each has the required part of the interface, so the cast states what it checked)
SOURCES = cast("Mapping[str, Source]", plugins.SOURCES)


def rule_bank(cfg: ExperimentConfig) -> dict:
    """The indexed stream's block: with stage1.reuse = spread, the whole stage's rule bank
    (its sequences / nca.sims_per_rule rules), so each rule recurs once a pass over the bank,
    as in the paper's epochs; otherwise the stream's own small blocks."""
    if not cfg.spreads_rules:
        return {}
    s1 = cfg.stage1
    sequences = -(-stage1_tokens(cfg) // (s1.batch_size * cfg.stage1_seq_len)) * s1.batch_size
    return {"block_rules": max(1, -(-sequences // cfg.nca.sims_per_rule))}


def stage1_tokens(cfg: ExperimentConfig) -> int:
    """The stage-1 token budget of this source: stage1.tokens, or with stage1.match = flops the
    tokens whose training costs what stage1.tokens of stage1.match_source cost (FLOPs per token
    differ between sources through the output head's vocabulary)."""
    s1 = cfg.stage1
    if s1.match == "tokens" or s1.match_source == s1.source:
        return s1.tokens

    def fpt(name: str) -> int:
        return model_compute(cfg.model, SOURCES[name].vocab_size(cfg), cfg.stage1_seq_len).flops_per_token

    return max(1, round(s1.tokens * fpt(s1.match_source) / fpt(s1.source)))
