"""Rule families: a complexity band with NCA settings, saved by name under the home folder and
usable as a preset (`ncalab run --preset NAME`). Light (no numpy): a screen lists the presets
while it composes."""

from __future__ import annotations

from pathlib import Path

from ncalab.nca.bands import Band
from ncalab.nca.config import NCAConfig
from ncalab.sources.families import preset_names as names
from ncalab.sources.families import save_family as save


def save_family(name: str, domain: str, band: Band, nca: NCAConfig, home: Path | None = None) -> dict:
    """Save the family `name` (target `domain`, `band`, the settings `nca`); what was written."""
    return save(name, domain, band, nca, home)


def preset_names(home: Path | None = None) -> list[str]:
    """The built-in presets, then the families saved under `home`, by name."""
    return names(home)
