"""Rule families: a band plus NCA settings, saved under a name for a target domain.

A saved family is a preset: `ncalab run --preset NAME` and the TUI's launcher offer it. They
live in `<NCALAB_HOME>/families.json`.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

from ncalab.errors import NcalabError
from ncalab.nca.bands import Band
from ncalab.nca.config import NCAConfig
from ncalab.store.location import default_home

BUILTIN = ("code", "math", "web")
_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def _path(home) -> Path:
    return Path(home if home is not None else default_home()) / "families.json"


def load_families(home=None) -> dict[str, dict]:
    """The saved families, each checked: a hand-edited or shared file that does not hold
    families gives a one-line error naming the file and the family, not a crash later."""
    p = _path(home)
    if not p.exists():
        return {}
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
        raise NcalabError(f"{p} is not valid JSON ({getattr(e, 'msg', type(e).__name__)}); fix or delete it") from None
    except OSError as e:
        raise NcalabError(f"cannot read {p}: {e.strerror or e}") from None
    if not isinstance(data, dict):
        raise NcalabError(f"{p} does not hold families (a JSON object of name: family); fix or delete it")
    for name, fam in data.items():
        try:
            _check(name, fam)
        except NcalabError as e:
            raise NcalabError(f"{p}: family {name[:40]!r}: {e}; fix or delete it") from None
    return data


def _check(name: str, fam) -> None:
    """A stored family has a valid name, a built-in domain, a band and valid NCA settings."""
    if not _NAME.match(name) or name in BUILTIN:
        raise NcalabError("not a valid family name")
    if not isinstance(fam, dict) or not {"domain", "band", "nca"} <= set(fam):
        raise NcalabError("a family has a domain, a band and nca settings")
    if fam["domain"] not in BUILTIN:
        raise NcalabError(f"domain must be one of {', '.join(BUILTIN)}")
    band = fam["band"]
    if not (isinstance(band, list) and len(band) == 2 and all(_is_number(x) for x in band)):
        raise NcalabError("band must be [lo, hi]")
    Band(*band)
    nca = fam["nca"]
    if not isinstance(nca, dict):
        raise NcalabError("nca must be an object of NCA settings")
    defaults = NCAConfig().to_dict()
    for key, value in nca.items():
        if key not in defaults:
            raise NcalabError(f"unknown NCA setting {key[:40]!r}")
        default = defaults[key]
        ok = isinstance(value, bool) if isinstance(default, bool) else (
            _is_number(value) and (isinstance(value, int) or not isinstance(default, int)))
        if not ok:
            raise NcalabError(f"nca.{key} must be a {type(default).__name__}")
    NCAConfig.from_dict(nca)


def _is_number(x) -> bool:
    if isinstance(x, bool):
        return False
    return isinstance(x, int) or (isinstance(x, float) and math.isfinite(x))


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
