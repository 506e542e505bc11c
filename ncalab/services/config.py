"""Resolving an experiment config from preset, scale, config file and flags."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TypedDict, Unpack

from ncalab.config import ExperimentConfig, apply_overrides, load_config_file, parse_set
from ncalab.errors import NcalabError
from ncalab.experiment.presets import resolve
from ncalab.services.match import recommended_band
from ncalab.store.location import default_home


class Flags(TypedDict, total=False):
    """The dedicated flags of run, sweep and the launch screen; None (or absent) leaves the setting."""

    corpus: str | None
    seed: int | None
    tokenizer: str | None
    reinit: str | None  # comma-separated parts
    device: str | None


def resolve_config(preset: str, scale: str, config_file: Path | None = None, sets: Sequence[str] = (), *,
                   home=None, **flags: Unpack[Flags]) -> ExperimentConfig:
    """preset+scale defaults < config file < --set < dedicated flags; then validated."""
    unknown = set(flags) - set(Flags.__annotations__)
    if unknown:  # as a misspelt keyword argument would be
        raise TypeError(f"resolve_config() got unexpected flags: {', '.join(sorted(unknown))}")
    cfg = resolve(preset, scale, home)
    matched = False
    if config_file is not None:
        data = load_config_file(config_file)
        for top in ("preset", "scale"):
            if top in data and data.pop(top) != getattr(cfg, top):
                raise NcalabError(f"the config file sets {top}; pass --{top} instead")
        matched = _take_match(data.get("stage1"))
        apply_overrides(cfg, data)
    sets, asked = _match_sets(list(sets))
    matched = asked if asked is not None else matched
    apply_overrides(cfg, parse_set(sets, cfg))
    _apply_flags(cfg, flags)
    if matched:  # measured last: the corpus and tokenizer are final only now
        cfg.stage1.band = _matched_band(cfg, home)
    return cfg.validate()


def _is_match(value) -> bool:
    return isinstance(value, str) and value.strip().lower() == "match"


def _take_match(stage1) -> bool:
    """Whether a config file's stage1.band is "match" (taken out: the band is measured later)."""
    if isinstance(stage1, dict) and _is_match(stage1.get("band")):
        del stage1["band"]
        return True
    return False


def _match_sets(sets: list[str]) -> tuple[list[str], bool | None]:
    """The --set items without stage1.band, and whether the last one given asked for match
    (None: no --set of the band; a later numeric band wins over an earlier match, and back)."""
    rest, asked = [], None
    for item in sets:
        key, _, value = item.partition("=")
        if key.strip() == "stage1.band":
            asked = _is_match(value)
            if asked:
                continue
        rest.append(item)
    return rest, asked


def _matched_band(cfg: ExperimentConfig, home) -> list[float]:
    """stage1.band=match: the band `ncalab match` recommends for the stage-2 corpus, read with the
    stage-2 tokenizer (trained and cached in the store's cache, where the run will find it)."""
    if cfg.stage1.source != "nca":
        raise NcalabError(f"stage1.band=match picks an NCA band; stage1.source is {cfg.stage1.source}")
    cache = Path(home or default_home()) / "cache"
    cache.mkdir(parents=True, exist_ok=True)
    return recommended_band(cfg, cache)


def _apply_flags(cfg: ExperimentConfig, flags: Flags) -> None:
    if (corpus := flags.get("corpus")) is not None:
        cfg.data.corpus = corpus
    if (seed := flags.get("seed")) is not None:
        cfg.seed = seed
    if (tokenizer := flags.get("tokenizer")) is not None:
        cfg.data.tokenizer = tokenizer
    if (reinit := flags.get("reinit")) is not None:
        cfg.transfer.reinit = [p.strip() for p in reinit.split(",") if p.strip()]  # type: ignore[misc]  # checked by validate
    if (device := flags.get("device")) is not None:
        cfg.runtime.device = device
