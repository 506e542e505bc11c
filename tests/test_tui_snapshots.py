"""Snapshots of the main screens at 80x24, 100x30 and 120x40 (pytest-textual-snapshot); the
layout's promises (whole ids, statuses and results, labels with their values, the keys on
screen) are asserted on the text in test_tui_layout.py.

Regenerate after an intended change with `pytest tests/test_tui_snapshots.py --snapshot-update`
and look at the SVGs before committing them.
"""

import pytest
from conftest import settle, until

from ncalab.tui.app import NcalabApp
from ncalab.tui.screens.gallery import GalleryScreen
from ncalab.tui.screens.help import HelpScreen
from ncalab.tui.screens.launch import LaunchScreen
from ncalab.tui.screens.runs import RunsScreen
from ncalab.tui.screens.studies import StudiesScreen
from ncalab.tui.screens.sweeps import SweepsScreen

# below 120 columns the narrow layouts; the quick subset checks the smallest and the wide one
SIZES = [(80, 24), pytest.param((100, 30), marks=pytest.mark.slow), (120, 40)]


async def _engine_loaded(pilot):
    await until(pilot, lambda: pilot.app.screen.batch is not None, "Explore's first rule loading", timeout=60)
    await settle(pilot)  # the store's libraries load in a worker too


SCREENS = {"r": RunsScreen, "w": SweepsScreen, "i": StudiesScreen, "l": LaunchScreen, "question_mark": HelpScreen}


@pytest.mark.parametrize("size", SIZES)
def test_explore(snap_compare, tmp_path, size):
    assert snap_compare(NcalabApp(home=tmp_path, seed=7, autoplay=False), terminal_size=size, run_before=_engine_loaded)


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("key", ["r", "w", "i", "l", "question_mark"])
def test_other_screens(snap_compare, tmp_path, size, key):
    async def open_screen(pilot):
        await _engine_loaded(pilot)
        await pilot.press(key)
        await until(pilot, lambda: isinstance(pilot.app.screen, SCREENS[key]), f"{SCREENS[key].__name__} opening")
        await settle(pilot)  # what it reads from the store (Runs, Sweeps, Studies) or works out (Launch's budget) is shown

    assert snap_compare(NcalabApp(home=tmp_path, seed=7, autoplay=False), terminal_size=size, run_before=open_screen)


@pytest.mark.parametrize("size", SIZES)
def test_families(snap_compare, tmp_path, size):
    async def open_families(pilot):
        await _engine_loaded(pilot)
        await pilot.press("f")
        await until(pilot, lambda: isinstance(pilot.app.screen, GalleryScreen) and pilot.app.screen.batch is not None,
                    "Families showing its rules", timeout=60)
        await settle(pilot)

    assert snap_compare(NcalabApp(home=tmp_path, seed=7, autoplay=False, draw_seed=11), terminal_size=size,
                        run_before=open_families)


def test_explore_light_theme(snap_compare, tmp_path):
    async def light(pilot):
        await _engine_loaded(pilot)
        pilot.app.theme = "textual-light"
        await pilot.wait_for_scheduled_animations()  # the restyle the theme change set off

    assert snap_compare(NcalabApp(home=tmp_path, seed=7, autoplay=False), terminal_size=(80, 24), run_before=light)


def test_getting_started(snap_compare, tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))  # a first launch
    async def explore_behind(pilot):
        # Explore under the getting-started screen
        await until(pilot, lambda: pilot.app.screen_stack[0].batch is not None, "Explore's first rule loading",
                    timeout=60)
        await settle(pilot)

    assert snap_compare(NcalabApp(home=tmp_path, seed=7, autoplay=False, welcome=True), terminal_size=(80, 24),
                        run_before=explore_behind)
