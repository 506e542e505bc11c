"""Dotted keys: the one place that knows how `section.key` maps onto the config.

`--set a.b=c`, `--grid a.b=c,d`, config files, sweep settings and the flat views of
`runs compare` and the TUI all go through here.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import types
import typing
from typing import Any

from ncalab.errors import NcalabError


def _fields(obj: Any) -> set[str]:
    if not dataclasses.is_dataclass(obj):
        return set()
    return {f.name for f in dataclasses.fields(obj) if not f.metadata.get("hidden")}


def _source_section(cfg: Any, name: str) -> Any:
    """A source plugin's settings section kept under `name` (ExperimentConfig.source_section), or None."""
    find = getattr(cfg, "source_section", None)
    return find(name) if callable(find) else None


def current(cfg: Any, key: str) -> Any:
    """The value a dotted key names in a config (dataclasses, or dicts); unknown keys are an error."""
    node = cfg
    for part in key.split("."):
        if isinstance(node, dict) and part in node:
            node = node[part]
        elif part in _fields(node):
            node = getattr(node, part)
        elif (section := _source_section(node, part)) is not None:
            node = section
        else:
            raise NcalabError(f"unknown config key {key!r}")
    return node


def help_of(cfg: Any, key: str) -> str:
    """The help on a dotted key's field (its `help` metadata: sections.option), or '' where the
    section keeps none (the engine's NCAConfig, a plugin's settings that do not)."""
    section, _, name = key.rpartition(".")
    node = current(cfg, section) if section else cfg
    if not dataclasses.is_dataclass(node):
        return ""
    return next((f.metadata.get("help", "") for f in dataclasses.fields(node) if f.name == name), "")


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
            section = _source_section(cfg, key)
            if section is None:
                raise NcalabError(f"unknown config key {where!r}")
            apply_overrides(section, v, where + ".")  # a plugin's settings: a plain (mutable) dataclass
            continue
        cur = getattr(cfg, key)
        if dataclasses.is_dataclass(cur):
            if cur.__dataclass_params__.frozen:
                if not isinstance(v, dict):
                    raise NcalabError(f"{where} must be a table of settings")
                unknown = set(v) - _fields(cur)
                if unknown:
                    raise NcalabError(f"unknown config key {where + '.' + sorted(unknown)[0]!r}")
                hints = _hints(type(cur))
                setattr(cfg, key, dataclasses.replace(cur, **{k: _typed(f"{where}.{k}", x, hints.get(k, Any))
                                                              for k, x in v.items()}))
            else:
                apply_overrides(cur, v, where + ".")
        else:
            setattr(cfg, key, _typed(where, v, _hints(type(cfg)).get(key, Any)))
    return cfg


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _typed(where: str, value: Any, hint: Any) -> Any:
    """`value` as the declared type of the setting, or a one-line error: values from a config
    file (or a stored config) arrive untyped. An integral float is an int (`tokens = 2e6`)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (types.UnionType, typing.Union):
        if value is None and type(None) in args:
            return None
        rest = [a for a in args if a is not type(None)]
        return _typed(where, value, rest[0]) if len(rest) == 1 else value
    if origin is typing.Literal:  # a choice: typed as its values are; which value is validate()'s to check
        hint = type(args[0])
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif hint is str:
        ok = isinstance(value, str)
    elif origin is list:
        if not isinstance(value, list):
            raise NcalabError(f"{where} must be a list, got {_show(value)}")
        return [_typed(f"{where}[{i}]", x, args[0] if args else Any) for i, x in enumerate(value)]
    else:
        return value  # any other type is the section's own validate()'s to check
    if not ok:
        raise NcalabError(f"{where} must be {'an' if hint is int else 'a'} {hint.__name__}, got {_show(value)}")
    return value


def _show(value: Any) -> str:
    text = json.dumps(value, default=str, ensure_ascii=False)
    return text if len(text) <= 40 else text[:37] + "..."


def parse_value(text: str, current_value: Any, choices: tuple[str, ...] = ()) -> Any:
    """A --set value, typed like the setting it replaces. ``choices``: the named values of a
    setting that is also a bool (runtime.compile: true, false or "auto")."""
    if choices:
        if text in choices:
            return text
        try:
            return parse_value(text, True)
        except NcalabError:
            raise NcalabError(f"expected true, false or {' or '.join(choices)}, got {text!r}") from None
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


def _named_choices(cfg: Any, key: str) -> tuple[str, ...]:
    """The named values of a setting typed `bool | Literal[...]`, else ()."""
    parent, _, name = key.rpartition(".")
    section = current(cfg, parent) if parent else cfg
    if not dataclasses.is_dataclass(section):
        return ()
    hint = _hints(type(section)).get(name)
    args = typing.get_args(hint) if typing.get_origin(hint) in (types.UnionType, typing.Union) else ()
    if bool not in args:
        return ()
    return tuple(v for a in args if typing.get_origin(a) is typing.Literal for v in typing.get_args(a))


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
            value = parse_value(text, cur, _named_choices(cfg, key))
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
