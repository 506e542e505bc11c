"""Samples of the stage-1 sources for the terminal lab: each source's fixed sample (seeded, the
same every time: Families compares them side by side) and a feed of its sequences one after
another (Explore runs a source live). What a sample shows is the source's own: its sequences,
the statistics it defines and its 2-D grid where it has one (docs/sources.md)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ncalab import plugins
from ncalab.config import ExperimentConfig, apply_overrides, parse_set
from ncalab.errors import NcalabError
from ncalab.lazy import np

SAMPLE_SEED = 0  # the seed of the fixed samples
FEED_BLOCK = 8  # sequences of a source without an addressable stream, taken at once and cycled
# what a source can fail with while it samples (a plugin's own errors are one line too)
FAILURES = (NcalabError, NotImplementedError, ValueError, TypeError, KeyError, OSError)


@dataclass
class SourceView:
    """One sample of a source as the front ends draw it (``note``: why there is none)."""

    name: str
    label: str
    sequences: np.ndarray | None = None  # (count, length) token ids
    stats: dict = field(default_factory=dict)
    grid: np.ndarray | None = None  # (rows, columns) small integers, or None
    vocab_size: int | None = None
    index: int = 0  # the first sequence's place in the source's held-out split
    note: str = ""


def source_config(name: str, seed: int = SAMPLE_SEED, sets: Sequence[str] = ()) -> ExperimentConfig:
    """The default config with stage 1 on `name`, the source's own `sample_settings` (what it is
    shown with, e.g. the text source's corpus) and `sets` (e.g. ["eca.rule_class=3"]), validated."""
    source: Any = plugins.load(name)  # a source's optional parts are read with getattr
    cfg = ExperimentConfig()
    cfg.seed = seed
    cfg.stage1.source = name
    apply_overrides(cfg, parse_set([*getattr(source, "sample_settings", ()), *sets], cfg))
    return cfg.validate()


def _failed(name: str, label: str, error: Exception) -> SourceView:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    return SourceView(name, label, note=text)


def fixed_sample(name: str, count: int = 2, seed: int = SAMPLE_SEED) -> SourceView:
    """The source's sample of `count` sequences at its defaults and `seed`: the same every time."""
    source: Any = plugins.load(name)  # a source's optional parts are read with getattr
    if source is None:
        return SourceView(name, name, note="broken plugin: left out")
    label = getattr(source, "label", name)
    if getattr(source, "sample", None) is None:
        return SourceView(name, label, note="this source gives no sample")
    try:
        cfg = source_config(name, seed)
        got = source.sample(cfg, count)
        return SourceView(name, label, np.asarray(got.sequences), _plain(got.stats), got.grid, source.vocab_size(cfg))
    except FAILURES as e:
        return _failed(name, label, e)


def fixed_samples(count: int = 2, seed: int = SAMPLE_SEED) -> list[SourceView]:
    """Every registered source's fixed sample, by name (a broken plugin is left out)."""
    return [fixed_sample(name, count, seed) for name in plugins.names() if plugins.load(name) is not None]


def _plain(stats: dict) -> dict:
    return {k: v if isinstance(v, (int, float, str)) else str(v) for k, v in stats.items()}


class SourceFeed:
    """A source's held-out sequences one after another, each with its statistics and grid.

    A source with an addressable stream (``sequences`` and ``statistics``, as SequenceSource
    gives) is read at any index; any other is sampled once (FEED_BLOCK sequences) and cycled.
    """

    def __init__(self, name: str, seed: int = SAMPLE_SEED, sets: Sequence[str] = ()):
        source: Any = plugins.load(name)  # its optional parts are read with getattr
        if source is None:
            raise NcalabError(f"no source {name!r} loads (see `ncalab sources`)")
        self.source = source
        self.name, self.label = name, getattr(self.source, "label", name)
        self.cfg = source_config(name, seed, sets)
        self.index = 0
        self._block: Any = None  # the source's sample of FEED_BLOCK sequences, once drawn
        self.vocab_size = self.source.vocab_size(self.cfg)

    def next(self) -> SourceView:
        """The next sequence (one row of ``sequences``) with its statistics and grid."""
        i, self.index = self.index, self.index + 1
        s, cfg = self.source, self.cfg
        if hasattr(s, "sequences") and hasattr(s, "statistics"):
            seqs = s.sequences(cfg, "val", i, 1, cfg.stage1_seq_len + 1)
            grid = s.grid(cfg, seqs) if hasattr(s, "grid") else None
            return SourceView(self.name, self.label, seqs, _plain(s.statistics(cfg, seqs)), grid, self.vocab_size, i)
        if getattr(s, "sample", None) is None:
            raise NcalabError(f"the source {self.name} gives no sample to show")
        if self._block is None:
            self._block = s.sample(cfg, FEED_BLOCK)
        k = i % len(self._block.sequences)
        grid = self._block.grid if k == 0 else None
        return SourceView(self.name, self.label, np.asarray(self._block.sequences[k : k + 1]),
                          _plain(self._block.stats), grid, self.vocab_size, i)
