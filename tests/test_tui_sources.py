"""Every registered stage-1 source in the terminal lab, driven with Pilot: Launch's source
picker and its settings, Families comparing the sources, Explore running ECA and Dyck live."""

import asyncio

import pytest
from conftest import plain_text, until

from ncalab import plugins
from ncalab.tui.app import NcalabApp
from ncalab.tui.screens.explore import ExploreScreen
from ncalab.tui.screens.gallery import GalleryScreen
from ncalab.tui.screens.launch import LaunchScreen
from ncalab.tui.widgets.source_view import SourceView


def run(coro):
    return asyncio.run(coro)




def test_launch_picks_eca_and_a_setting_goes_into_the_config(tmp_path):
    from ncalab.cli.main import main

    async def scenario():
        app = NcalabApp(home=tmp_path, autoplay=False)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("l")
            screen = app.screen
            assert isinstance(screen, LaunchScreen)
            await until(pilot, lambda: {"nca", "dyck", "eca", "ww"} <= set(screen.sources), "the sources listed")
            assert screen.query_one("#setting-alphabet").placeholder == "10"  # NCA's settings first
            screen.query_one("#source").value = "eca"
            await until(pilot, lambda: screen.query_one("#setting-rule_class"), "ECA's settings shown")
            assert screen.query_one("#setting-rule_class").placeholder == "4"
            assert not screen.query("#setting-alphabet")  # NCA's are gone
            screen.query_one("#setting-rule_class").value = "3"
            panel = screen.query_one("#launch-info")
            await until(pilot, lambda: "eca.rule_class=3" in plain_text(panel), "the panel showing eca.rule_class=3")
            assert "stage 1: eca  eca.rule_class=3" in plain_text(panel) and "ECA tokens" in plain_text(panel)
            cfg = screen._config()
            assert cfg.stage1.source == "eca" and cfg.source_section("eca").rule_class == 3
            return screen.source_sets()

    sets = run(scenario())
    assert sets == ["stage1.source=eca", "eca.rule_class=3"]
    args = ["run", "--preset", "code", "--home", str(tmp_path), "--print-config"]
    assert main(args + [a for item in sets for a in ("--set", item)]) == 0  # what ncalab run would launch


def test_a_broken_plugin_is_absent_from_the_picker(tmp_path, monkeypatch):
    real = plugins.entries()
    monkeypatch.setattr(plugins, "entries", lambda: {**real, "bad": plugins.Entry("bad", "json:nope", "bad-dist")})
    monkeypatch.setattr(plugins, "_broken", {})
    monkeypatch.setattr(plugins, "_warned", set())

    async def scenario():
        app = NcalabApp(home=tmp_path, autoplay=False)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("l")
            screen = app.screen
            await until(pilot, lambda: "eca" in screen.sources, "the sources listed")
            assert "bad" not in screen.sources and isinstance(app.screen, LaunchScreen)

    run(scenario())
    assert "bad" in plugins.broken()


# slow (end to end); the fast suite keeps Explore running ECA and Dyck live with their statistics
@pytest.mark.slow
def test_families_compares_every_source_with_its_statistics(tmp_path):
    async def scenario():
        app = NcalabApp(home=tmp_path, autoplay=False, draw_seed=11)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("f")
            screen = app.screen
            assert isinstance(screen, GalleryScreen)
            await until(pilot, lambda: screen.batch is not None, "Families showing its rules", timeout=60)
            await pilot.press("c")
            await until(pilot, lambda: len(screen.query(".source-card")) >= 5, "a card for each source", timeout=60)
            eca, dyck = plain_text(screen.query_one("#card-eca")), plain_text(screen.query_one("#card-dyck"))
            assert "live cells" in eca and "rules" in eca
            assert "max depth" in dyck and "mean depth" in dyck
            text = plain_text(screen.query_one("#card-text"))  # natural text, on the standard library
            assert "python-stdlib" in text and "gzip score" in text
            assert "sources, each its fixed sample" in str(screen.query_one("#gallery-message").render())
            first = eca
            await pilot.press("c")  # back to the NCA rules, and again: the same fixed sample
            assert screen.query_one("#gallery-main").current == "gallery-grid"
            await pilot.press("c")
            assert plain_text(screen.query_one("#card-eca")) == first

    run(scenario())


def test_explore_runs_eca_and_dyck_live_with_their_statistics(tmp_path):
    async def scenario():
        app = NcalabApp(home=tmp_path, seed=5, autoplay=False)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            assert isinstance(screen, ExploreScreen)
            await until(pilot, lambda: screen.batch is not None, "Explore's first rule", timeout=60)
            await until(pilot, lambda: {"eca", "dyck"} <= set(screen.source_names), "the sources listed")
            view = screen.query_one("#source-view", SourceView)
            screen.query_one("#source").value = "eca"
            await until(pilot, lambda: screen.source_sample is not None, "ECA's first sequence", timeout=60)
            assert view.kind == "grid" and view.display and not screen.query_one("#grid").display
            stats = plain_text(screen.query_one("#stats"))
            assert "live cells" in stats and "rules" in stats and "eca sequence 0" in stats
            shown = len(view.shown)
            await pilot.press("s")  # a step scrolls the diagram one row
            assert len(view.shown) == shown + 1
            screen.query_one("#source").value = "dyck"
            await until(pilot, lambda: screen.source_sample is not None and screen.source_sample.name == "dyck",
                        "Dyck's first sequence", timeout=60)
            assert view.kind == "profile"
            assert "max depth" in plain_text(screen.query_one("#stats"))
            shown = len(view.shown)
            for _ in range(3):
                await pilot.press("s")
            assert len(view.shown) == shown + 3 * 4  # four positions a step
            await pilot.press("n")  # the next sequence
            await until(pilot, lambda: screen.source_sample.index >= 1, "Dyck's next sequence")
            screen.query_one("#source").value = "nca"
            await pilot.pause()
            assert screen.query_one("#grid").display and not view.display
            before = screen.step_count
            await pilot.press("s")
            assert screen.step_count == before + 1  # NCA as before

    run(scenario())
