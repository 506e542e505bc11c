"""Resolving an experiment config from preset, scale, config file and flags."""

from __future__ import annotations

from pathlib import Path

from ncalab.errors import NcalabError
from ncalab.config import ExperimentConfig, apply_overrides, load_config_file, parse_set
from ncalab.experiment.presets import resolve


def resolve_config(preset: str, scale: str, config_file: Path | None = None, sets: list[str] = (),
                   corpus: str | None = None, seed: int | None = None, tokenizer: str | None = None,
                   reinit: str | None = None, device: str | None = None, home=None) -> ExperimentConfig:
    """preset+scale defaults < config file < --set < dedicated flags; then validated."""
    cfg = resolve(preset, scale, home)
    if config_file is not None:
        data = load_config_file(config_file)
        for top in ("preset", "scale"):
            if top in data and data.pop(top) != getattr(cfg, top):
                raise NcalabError(f"the config file sets {top}; pass --{top} instead")
        apply_overrides(cfg, data)
    apply_overrides(cfg, parse_set(list(sets), cfg))
    if corpus is not None:
        cfg.data.corpus = corpus
    if seed is not None:
        cfg.seed = seed
    if tokenizer is not None:
        cfg.data.tokenizer = tokenizer
    if reinit is not None:
        cfg.transfer.reinit = [p.strip() for p in reinit.split(",") if p.strip()]
    if device is not None:
        cfg.runtime.device = device
    return cfg.validate()
