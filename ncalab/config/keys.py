"""Dotted keys: the one place that knows how `section.key` maps onto the config.

`--set a.b=c`, `--grid a.b=c,d`, config files, sweep settings and the flat views of
`runs compare` and the TUI all go through here.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ncalab.errors import NcalabError


def _fields(obj: Any) -> set[str]:
    return {f.name for f in dataclasses.fields(obj)} if dataclasses.is_dataclass(obj) else set()


def current(cfg: Any, key: str) -> Any:
    """The value a dotted key names in a config (dataclasses, or dicts); unknown keys are an error."""
    node = cfg
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif part in _fields(node):
            node = getattr(node, part)
        else:
            raise NcalabError(f"unknown config key {key!r}")
    return node


def lookup(tree: dict, key: str, default: Any = None) -> Any:
    """The value of a dotted key in a plain nested dict (a stored config), or default."""
    node: Any = tree
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def nest(key: str, value: Any) -> dict:
    """'a.b.c', v -> {'a': {'b': {'c': v}}}."""
    out: dict = {}
    node = out
    parts = key.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = value
    return out


def short(key: str) -> str:
    """'stage2.lr' -> 'lr' (labels in narrow tables)."""
    return key.rsplit(".", 1)[-1]


def flatten(tree: dict, prefix: str = "") -> dict:
    """{'a': {'b': 1}} -> {'a.b': 1}."""
    out = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


def apply_overrides(cfg: Any, values: dict, path: str = "") -> Any:
    """Set fields of a config from a nested dict; unknown keys are an error. Frozen sections
    (the engine's NCAConfig) are rebuilt with their new values, so they validate themselves."""
    if not isinstance(values, dict):
        raise NcalabError(f"{path.rstrip('.') or 'config'} must be a table of settings")
    for key, v in values.items():
        where = f"{path}{key}"
        if key not in _fields(cfg):
            raise NcalabError(f"unknown config key {where!r}")
        cur = getattr(cfg, key)
        if dataclasses.is_dataclass(cur):
            if cur.__dataclass_params__.frozen:
                if not isinstance(v, dict):
                    raise NcalabError(f"{where} must be a table of settings")
                unknown = set(v) - _fields(cur)
                if unknown:
                    raise NcalabError(f"unknown config key {where + '.' + sorted(unknown)[0]!r}")
                setattr(cfg, key, dataclasses.replace(cur, **v))
            else:
                apply_overrides(cur, v, where + ".")
        else:
            setattr(cfg, key, v)
    return cfg


def parse_value(text: str, current_value: Any) -> Any:
    """A --set value, typed like the setting it replaces."""
    if isinstance(current_value, bool):
        if text.lower() in ("1", "true", "yes", "on"):
            return True
        if text.lower() in ("0", "false", "no", "off"):
            return False
        raise NcalabError(f"expected true or false, got {text!r}")
    if isinstance(current_value, int):
        try:
            return int(float(text)) if "e" in text.lower() else int(text)
        except (ValueError, OverflowError):
            raise NcalabError(f"expected an integer, got {text!r}") from None
    if isinstance(current_value, float):
        try:
            return float(text)
        except ValueError:
            raise NcalabError(f"expected a number, got {text!r}") from None
    if isinstance(current_value, list) or (current_value is None and _looks_like_list(text)):
        if text.lower() in ("", "none", "[]"):
            return [] if isinstance(current_value, list) else None
        parts = [p.strip() for p in text.replace(":", ",").split(",") if p.strip()]
        try:
            return [float(p) for p in parts]
        except ValueError:
            return parts
    if current_value is None and text.lower() in ("", "none", "null"):
        return None
    return text


def _looks_like_list(text: str) -> bool:
    # an optional setting that holds numbers (a band) is written LO:HI; optional strings are plain
    parts = [p for p in text.replace(":", ",").split(",") if p.strip()]
    return len(parts) > 1 and all(_is_number(p) for p in parts)


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def parse_set(items: list[str], cfg: Any) -> dict:
    """['stage1.lr=3e-4', 'nca.alphabet=2'] -> nested dict, typed by the current values."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise NcalabError(f"--set takes KEY=VALUE, got {item!r}")
        key, text = (part.strip() for part in item.split("=", 1))
        cur = current(cfg, key)
        if dataclasses.is_dataclass(cur) or isinstance(cur, dict):
            raise NcalabError(f"--set {key}: {key} is a section; set one of its keys, e.g. {key}.{next(iter(_fields(cur) or cur), 'KEY')}=...")
        try:
            value = parse_value(text, cur)
        except NcalabError as e:
            raise NcalabError(f"--set {key}: {e}") from None
        merge_into(out, nest(key, value))
    return out


def merge_into(dst: dict, src: dict) -> dict:
    """Deep-merge nested dicts (later wins)."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            merge_into(dst[k], v)
        else:
            dst[k] = v
    return dst


def leaf(tree: dict, key: str) -> Any:
    """The value of a dotted key in a nested dict that has it."""
    node = tree
    for p in key.split("."):
        node = node[p]
    return node
