"""Sweep grids: `--grid KEY=V1,V2,...` parsed and typed against the config, and expanded.

Values are typed like the setting they replace (as `--set` does). A value that is itself a
list is written with `+` between items (`transfer.reinit=attn+norm`) or `:` for a band
(`stage1.band=0.3:0.5`); `none` is the empty list.

A grid is normally a cartesian product. A zipped grid pairs the keys' values position by
position instead (`model.d_model=128,256` with `model.n_head=4,8` is two settings), for
settings that must move together, such as width and head count at a fixed head size.
"""

from __future__ import annotations

import copy
import itertools
import json

from ncalab.config import ExperimentConfig, apply_overrides, parse_set
from ncalab.config.keys import leaf, nest
from ncalab.errors import NcalabError


def parse_grid(items: list[str], base: ExperimentConfig, zipped: bool = False) -> dict[str, list]:
    """['stage2.lr=1e-3,3e-4'] -> {'stage2.lr': [0.001, 0.0003]}; keys and values checked.
    In a zipped grid a key may repeat a value, but no two settings may be the same."""
    grid: dict[str, list] = {}
    for item in items:
        if "=" not in item:
            raise NcalabError(f"--grid takes KEY=V1,V2,..., got {item!r}")
        key, text = (part.strip() for part in item.split("=", 1))
        if key in ("seed", "preset", "scale"):
            raise NcalabError(f"--grid {key}: use --seeds for seeds; preset and scale are one per sweep")
        raw = [v.strip() for v in text.split(",") if v.strip()]
        if not raw:
            raise NcalabError(f"--grid {key} has no values")
        values = []
        for v in raw:
            typed = leaf(parse_set([f"{key}={v.replace('+', ',')}"], base), key)
            if typed in values and not zipped:
                raise NcalabError(f"--grid {key} lists {v!r} twice")
            values.append(typed)
        if key in grid:
            raise NcalabError(f"--grid {key} is given twice; put all its values in one --grid")
        grid[key] = values
    if zipped:
        _check_zip(grid)
    return grid


def _check_zip(grid: dict[str, list]) -> None:
    lengths = {k: len(v) for k, v in grid.items()}
    if len(set(lengths.values())) > 1:
        counts = ", ".join(f"{k} has {n}" for k, n in lengths.items())
        raise NcalabError(f"--zip pairs the grids' values position by position, so each needs as many values: {counts}")
    seen = []
    for s in settings(grid, zipped=True):
        if s in seen:
            raise NcalabError(f"--zip: the setting {setting_label(s)} is listed twice")
        seen.append(s)


def settings(grid: dict[str, list], zipped: bool = False) -> list[dict]:
    """The cartesian product (or, zipped, the position-by-position pairs) as
    [{key: value, ...}, ...] in a stable order."""
    keys = list(grid)
    if zipped:
        return [dict(zip(keys, combo)) for combo in zip(*(grid[k] for k in keys))]
    return [dict(zip(keys, combo)) for combo in itertools.product(*(grid[k] for k in keys))]


def apply_setting(base: ExperimentConfig, setting: dict, seed: int) -> ExperimentConfig:
    cfg = copy.deepcopy(base)
    for key, value in setting.items():
        apply_overrides(cfg, nest(key, copy.deepcopy(value)))
    cfg.seed = seed
    return cfg.validate()


def setting_label(setting: dict) -> str:
    """'transfer.reinit=attn stage2.lr=0.0003 stage1.band=0.3:0.4', written as --grid takes it
    (lists joined with +, a band with :, the empty list as none)."""
    def show(k, v):
        if isinstance(v, list):
            return (":" if k.endswith("band") else "+").join(str(x) for x in v) if v else "none"
        return str(v)

    return " ".join(f"{k}={show(k, v)}" for k, v in setting.items()) or "(base)"


def setting_id(setting: dict) -> str:
    """A stable text form of a setting, to find an experiment's place in its sweep."""
    return json.dumps(setting, sort_keys=True, default=str)
