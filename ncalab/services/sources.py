"""The registered stage-1 sources as the front ends list them: name, origin, settings, a sample."""

from __future__ import annotations

from dataclasses import asdict, dataclass, is_dataclass
from typing import Any

from ncalab import plugins
from ncalab.config import ExperimentConfig
from ncalab.errors import NcalabError

SAMPLE_TOKENS = 16  # tokens of the sample a table shows


def describe(with_sample: bool = True) -> list[dict]:
    """One dict per source that loads (a broken plugin is left out with one warning line)."""
    rows = []
    for name, entry in sorted(plugins.entries().items()):
        source: Any = plugins.load(name)  # a source's optional parts are read with getattr
        if source is None:
            continue
        row: dict[str, Any] = {"name": name, "origin": entry.origin, "label": getattr(source, "label", name),
                               "target": entry.target, "settings_key": None, "settings": {}, "vocab_size": None,
                               "sample": None, "stats": {}, "note": ""}
        kind = getattr(source, "settings", None)
        if isinstance(kind, type) and is_dataclass(kind):
            row["settings_key"] = getattr(source, "settings_key", name)
            row["settings"] = asdict(kind())
        try:
            _fill_sample(row, source, name, with_sample)
        except (NcalabError, NotImplementedError, ValueError, TypeError, KeyError, OSError) as e:
            row["note"] = str(e).splitlines()[0] if str(e) else type(e).__name__
        rows.append(row)
    return rows


def _fill_sample(row: dict, source, name: str, with_sample: bool) -> None:
    cfg = ExperimentConfig()
    cfg.stage1.source = name
    if name == "text" and not cfg.stage1.corpus:
        row["note"] = "reads stage1.corpus (a file, folder or hf:NAME)"
        row["vocab_size"] = source.vocab_size(cfg)
        return
    cfg.validate()
    row["vocab_size"] = source.vocab_size(cfg)
    sample = getattr(source, "sample", None)
    if not with_sample or sample is None:
        return
    got = sample(cfg, 1)
    row["sample"] = [int(t) for t in got.sequences[0][:SAMPLE_TOKENS]]
    row["stats"] = {k: v if isinstance(v, (int, float, str)) else str(v) for k, v in got.stats.items()}


@dataclass(frozen=True)
class Choice:
    """A source as a picker lists it: its settings section `settings_key` (None: it has none)
    with each setting's default."""

    name: str
    label: str
    origin: str
    settings_key: str | None
    settings: dict


def choices() -> tuple[list[Choice], dict[str, str]]:
    """Every source that loads, for a picker, and {name: why} of the broken plugins left out
    (the registry has printed one warning line for each)."""
    out = []
    for name, entry in sorted(plugins.entries().items()):
        source: Any = plugins.load(name)  # a source's optional parts are read with getattr
        if source is None:
            continue
        kind = getattr(source, "settings", None)
        if isinstance(kind, type) and is_dataclass(kind):
            key, defaults = getattr(source, "settings_key", name), asdict(kind())
        else:
            key, defaults = None, {}
        out.append(Choice(name, getattr(source, "label", name), entry.origin, key, defaults))
    return out, plugins.broken()


def setting_items(choice: Choice, typed: dict[str, str]) -> list[str]:
    """`--set` items choosing the source and the settings typed for it (a blank one keeps the
    preset's value)."""
    items = [f"stage1.source={choice.name}"]
    if choice.settings_key:
        items += [f"{choice.settings_key}.{k}={v.strip()}" for k, v in typed.items()
                  if k in choice.settings and v.strip()]
    return items


def shown_default(value) -> str:
    """A setting's default as a field shows it (a list comma-separated, as `--set` takes it)."""
    if isinstance(value, list):
        return ",".join(map(str, value)) if value else "[]"
    return str(value)
