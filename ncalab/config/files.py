"""Config files: TOML or JSON with the same sections as `--set` keys."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

from ncalab.errors import NcalabError


def load_config_file(path: str | Path) -> dict:
    p = Path(path)
    if not p.is_file():
        raise NcalabError(f"config file {p} does not exist")
    try:
        text = p.read_text()
        return json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (json.JSONDecodeError, tomllib.TOMLDecodeError) as e:
        raise NcalabError(f"cannot parse {p}: {str(e).splitlines()[0]}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise NcalabError(f"cannot read {p}: {e}") from None
