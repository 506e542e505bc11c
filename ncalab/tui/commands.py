"""Every action of the app in the command palette (ctrl+p), and user key maps."""

from __future__ import annotations

import os
import tomllib
from functools import partial
from pathlib import Path

from textual.command import DiscoveryHit, Hit, Hits, Provider

# (title, mode to show first or None, action on that screen or on the app)
COMMANDS: list[tuple[str, str | None, str]] = [
    ("Go to Explore", None, "switch_mode('explore')"),
    ("Go to Families", None, "switch_mode('families')"),
    ("Go to Launch", None, "switch_mode('launch')"),
    ("Go to Runs", None, "switch_mode('runs')"),
    ("Go to Sweeps", None, "switch_mode('sweeps')"),
    ("Go to Studies", None, "switch_mode('studies')"),
    ("Explore: play / pause", "explore", "toggle_play"),
    ("Explore: single step", "explore", "step"),
    ("Explore: next rule (from the band, or any rule)", "explore", "new_rule"),
    ("Explore: draw from the band / any rule", "explore", "toggle_band"),
    ("Explore: faster", "explore", "faster"),
    ("Explore: slower", "explore", "slower"),
    ("Families: draw rules again", "families", "draw"),
    ("Families: play / pause", "families", "toggle_play"),
    ("Launch: start in background", "launch", "start"),
    ("Runs: refresh", "runs", "refresh"),
    ("Runs: cancel the selected experiment", "runs", "cancel"),
    ("Runs: resume the selected experiment", "runs", "resume"),
    ("Runs: mark / unmark the selected experiment to compare curves", "runs", "mark"),
    ("Runs: tag the selected experiment", "runs", "tag"),
    ("Runs: delete the selected experiment", "runs", "delete"),
    ("Runs: filter", "runs", "filter"),
    ("Sweeps: refresh", "sweeps", "refresh"),
    ("Sweeps: plot gain against the next swept key", "sweeps", "next_key"),
    ("Sweeps: resume the failed or cancelled members of the selected sweep", "sweeps", "resume"),
    ("Sweeps: cancel the selected sweep (queued and running members)", "sweeps", "cancel"),
    ("Studies: refresh", "studies", "refresh"),
    ("Studies: plot the next arm's loss against D", "studies", "next_arm"),
    ("Studies: refit the answers with 1000 bootstrap resamples", "studies", "full_fit"),
    ("Studies: resume the failed or cancelled members of the selected study", "studies", "resume"),
    ("Studies: cancel the selected study (queued and running members)", "studies", "cancel"),
    ("Help: keys of every screen", None, "help"),
    ("Getting started", None, "getting_started"),
    ("Toggle dark / light theme", None, "toggle_dark"),
    ("Quit", None, "quit"),
]


class NcalabCommands(Provider):
    async def _run(self, mode: str | None, action: str) -> None:
        app = self.app
        if mode is None:
            await app.run_action(action)
            return
        await app.run_action(f"switch_mode('{mode}')")
        await app.screen.run_action(action)

    async def discover(self) -> Hits:
        for title, mode, action in COMMANDS:
            yield DiscoveryHit(title, partial(self._run, mode, action))

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for title, mode, action in COMMANDS:
            score = matcher.match(title)
            if score > 0:
                yield Hit(score, matcher.highlight(title), partial(self._run, mode, action))


def config_dir() -> Path:
    """~/.config/ncalab, or $XDG_CONFIG_HOME/ncalab: the user's settings, not the run store's."""
    return Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config") / "ncalab"


def keymap_path() -> Path:
    if os.environ.get("NCALAB_KEYS"):
        return Path(os.environ["NCALAB_KEYS"])
    return config_dir() / "keys.toml"


def first_launch() -> bool:
    """True until the getting-started screen has been shown once (a marker file says it was)."""
    return not (config_dir() / "welcomed").exists()


def mark_welcomed() -> None:
    try:
        config_dir().mkdir(parents=True, exist_ok=True)
        (config_dir() / "welcomed").write_text("the getting-started screen was shown; delete this file to see it again\n")
    except OSError:
        pass  # a read-only home: it shows again next time, nothing worse


def load_keymap(path: Path | None = None) -> tuple[dict[str, str], str | None]:
    """{binding id: keys} from [keys] in keys.toml, and an error message if the file is bad."""
    path = path or keymap_path()
    if not path.exists():
        return {}, None
    try:
        data = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, OSError, UnicodeDecodeError) as e:
        return {}, f"ignoring {path}: {e}"
    keys = data.get("keys", {})
    if not isinstance(keys, dict) or not all(isinstance(v, str) for v in keys.values()):
        return {}, f"ignoring {path}: [keys] must map binding ids to key names"
    return keys, None
