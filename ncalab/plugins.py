"""The registry of stage-1 sources: every source, built-in or installed, is a Python entry point.

A distribution registers a source under the entry-point group `ncalab.sources`:

    [project.entry-points."ncalab.sources"]
    toy = "toy_source:ToySource"

and `--set stage1.source=toy` then works (docs/sources.md has the interface). ncalab's own
sources are registered the same way in its pyproject.toml; BUILTIN is the same table, read
when ncalab runs from a checkout whose metadata is not installed.

Names are known without importing anything; a source's module is imported the first time it
is asked for. A plugin that fails to import, or gives an object that is not a source, is left
out with one warning line naming it, once per process: never a crash of the CLI or the TUI.
This module sits at the bottom of the layers (the config validates `stage1.source` here) and
imports nothing from ncalab.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from importlib import metadata

GROUP = "ncalab.sources"
# name -> "module:attribute" of ncalab's own sources (the entry points of its pyproject.toml)
BUILTIN = {
    "nca": "ncalab.sources.nca:NCA",
    "dyck": "ncalab.sources.dyck:DYCK",
    "shuffle_dyck": "ncalab.sources.dyck:SHUFFLE_DYCK",
    "text": "ncalab.sources.text:TEXT",
    "eca": "ncalab.sources.eca:ECA",
    "ww": "ncalab.sources.ww:WW",
    "identity": "ncalab.sources.procedural:IDENTITY",  # the procedural tasks of Jiang et al. 2026
    "reverse": "ncalab.sources.procedural:REVERSE",
    "sort": "ncalab.sources.procedural:SORT",
    "set": "ncalab.sources.procedural:SET",
    "union": "ncalab.sources.procedural:UNION",
    "delete": "ncalab.sources.procedural:DELETE",
    "stack": "ncalab.sources.procedural:STACK",
    "shuffled": "ncalab.sources.controls:SHUFFLED",  # controls that wrap any source
    "ngram": "ncalab.sources.controls:NGRAM",
}
# what an object needs to be a source (the rest of the interface is optional)
REQUIRED = ("name", "label", "vocab_size", "reuse_settings", "open")


@dataclass(frozen=True)
class Entry:
    name: str
    target: str  # "module:attribute"
    origin: str  # "builtin", or the distribution that installed it


def _warn(line: str) -> None:
    print(f"warning: {line}", file=sys.stderr)


warn: Callable[[str], None] = _warn  # a front end may route the warning elsewhere (the TUI: a notification)
_loaded: dict[str, object] = {}
_broken: dict[str, str] = {}


def entries() -> dict[str, Entry]:
    """Every registered source by name, nothing imported. A plugin cannot replace a built-in."""
    found: dict[str, Entry] = {}
    for ep in metadata.entry_points(group=GROUP):
        dist = getattr(ep.dist, "name", None) or "unknown"
        origin = "builtin" if dist == "ncalab" else dist
        if ep.name in BUILTIN and origin != "builtin":
            _once(ep.name + "@" + origin, f"source plugin {ep.name!r} from {origin} is left out: "
                                          "a built-in source has that name")
            continue
        found.setdefault(ep.name, Entry(ep.name, ep.value, origin))
    for name, target in BUILTIN.items():  # a checkout without installed metadata
        found.setdefault(name, Entry(name, target, "builtin"))
    return found


def names() -> list[str]:
    return sorted(entries())


def load(name: str) -> object | None:
    """The source object registered as `name` (imported once), or None when there is no such
    source or it is broken (then one warning line names it)."""
    if name in _loaded:
        return _loaded[name]
    if name in _broken:
        return None
    entry = entries().get(name)
    if entry is None:
        return None
    try:
        obj = _resolve(entry.target)
        obj = obj() if isinstance(obj, type) else obj
        problem = _problem(obj, name)
    except Exception as e:  # a plugin's import can fail in any way; it must not take ncalab down
        problem = f"{type(e).__name__}: {e}".splitlines()[0]
    if problem:
        _broken[name] = problem
        _once(name, f"source plugin {name!r} ({entry.origin}, {entry.target}) is broken and left out: {problem}")
        return None
    _loaded[name] = obj
    return obj


def _resolve(target: str) -> object:
    module, _, attr = target.partition(":")
    obj = importlib.import_module(module)
    for part in attr.split(".") if attr else ():
        obj = getattr(obj, part)
    return obj


def _problem(obj: object, name: str) -> str | None:
    missing = [a for a in REQUIRED if not hasattr(obj, a)]
    if missing:
        return f"{type(obj).__name__} is not a source (it has no {', '.join(missing)})"
    if obj.name != name:
        return f"its name is {obj.name!r}, registered as {name!r}"
    settings = getattr(obj, "settings", None)
    if settings is not None and not hasattr(settings, "__dataclass_fields__"):
        return "its settings are not a dataclass"
    return None


_warned: set[str] = set()


def _once(key: str, line: str) -> None:
    if key not in _warned:
        _warned.add(key)
        warn(line)


def broken() -> dict[str, str]:
    """{name: why} of the plugins found broken so far in this process."""
    return dict(_broken)


def settings_type(name: str) -> type | None:
    """The settings section (a dataclass) of the source `name`, kept under the config key
    `name`, or None (no such source, a broken one, or one whose settings live elsewhere)."""
    source = load(name)
    if source is None or getattr(source, "settings_key", name) != name:
        return None
    return getattr(source, "settings", None)


class Registry(Mapping):
    """name -> source, for every source that loads (iteration imports each one)."""

    def __getitem__(self, name: str) -> object:
        source = load(name)
        if source is None:
            raise KeyError(name)
        return source

    def __iter__(self) -> Iterator[str]:
        return iter([n for n in names() if load(n) is not None])

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and load(name) is not None


SOURCES = Registry()
