"""Rule families: a band plus NCA settings, saved under a name for a target domain.

A saved family is a preset: `ncalab run --preset NAME` and the TUI's launcher offer it. They
live in `<NCALAB_HOME>/families.json`.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ncalab.errors import NcalabError
from ncalab.nca.bands import Band
from ncalab.nca.config import NCAConfig

BUILTIN = ("code", "math", "web")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def _path(home) -> Path:
    from ncalab.store import default_home

    return Path(home if home is not None else default_home()) / "families.json"


def load_families(home=None) -> dict[str, dict]:
    p = _path(home)
    if not p.exists():
        return {}
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise NcalabError(f"{p} is not valid JSON ({e.msg}); fix or delete it") from None
    return data if isinstance(data, dict) else {}


def save_family(name: str, domain: str, band: Band, nca: NCAConfig, home=None) -> dict:
    if not _NAME.match(name):
        raise NcalabError("a family name is lower-case letters, digits, - and _ (up to 40), starting with a letter")
    if name in BUILTIN:
        raise NcalabError(f"{name!r} is a built-in preset; choose another name")
    if domain not in BUILTIN:
        raise NcalabError(f"a family targets one of {', '.join(BUILTIN)}, not {domain!r}")
    fam = {"domain": domain, "band": [band.lo, band.hi], "nca": nca.to_dict()}
    families = load_families(home)
    families[name] = fam
    p = _path(home)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_suffix(".tmp")
    tmp.write_text(json.dumps(families, indent=2))
    os.replace(tmp, p)
    return fam


def preset_names(home=None) -> list[str]:
    return list(BUILTIN) + sorted(load_families(home))
