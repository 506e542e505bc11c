"""Resolving an experiment config from preset, scale, config file and flags."""

from __future__ import annotations

from pathlib import Path
from typing import TypedDict, Unpack

from ncalab.errors import NcalabError
from ncalab.config import ExperimentConfig, apply_overrides, load_config_file, parse_set
from ncalab.experiment.presets import resolve


class Flags(TypedDict, total=False):
    """The dedicated flags of run, sweep and the launch screen; None (or absent) leaves the setting."""

    corpus: str | None
    seed: int | None
    tokenizer: str | None
    reinit: str | None  # comma-separated parts
    device: str | None


def resolve_config(preset: str, scale: str, config_file: Path | None = None, sets: list[str] = (), *,
                   home=None, **flags: Unpack[Flags]) -> ExperimentConfig:
    """preset+scale defaults < config file < --set < dedicated flags; then validated."""
    unknown = set(flags) - set(Flags.__annotations__)
    if unknown:  # as a misspelt keyword argument would be
        raise TypeError(f"resolve_config() got unexpected flags: {', '.join(sorted(unknown))}")
    cfg = resolve(preset, scale, home)
    if config_file is not None:
        data = load_config_file(config_file)
        for top in ("preset", "scale"):
            if top in data and data.pop(top) != getattr(cfg, top):
                raise NcalabError(f"the config file sets {top}; pass --{top} instead")
        apply_overrides(cfg, data)
    apply_overrides(cfg, parse_set(list(sets), cfg))
    _apply_flags(cfg, flags)
    return cfg.validate()


def _apply_flags(cfg: ExperimentConfig, flags: Flags) -> None:
    if flags.get("corpus") is not None:
        cfg.data.corpus = flags["corpus"]
    if flags.get("seed") is not None:
        cfg.seed = flags["seed"]
    if flags.get("tokenizer") is not None:
        cfg.data.tokenizer = flags["tokenizer"]
    if flags.get("reinit") is not None:
        cfg.transfer.reinit = [p.strip() for p in flags["reinit"].split(",") if p.strip()]
    if flags.get("device") is not None:
        cfg.runtime.device = flags["device"]
