"""The Textual app, driven with Pilot on a real temporary store."""

import asyncio
import os

import pytest

from conftest import MICRO
from ncalab.cli.main import main
from ncalab.tui.app import NcalabApp
from ncalab.tui.screens.explore import ExploreScreen
from ncalab.tui.screens.help import HelpScreen
from ncalab.tui.screens.runs import RunsScreen
from ncalab.tui.widgets.grid_view import GridView


def run(coro):
    return asyncio.run(coro)


def test_explore_plays_steps_and_loads_rules(tmp_path):
    async def scenario():
        app = NcalabApp(home=tmp_path, seed=5)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = app.screen
            assert isinstance(screen, ExploreScreen)
            for _ in range(100):  # the engine loads in a worker thread
                await pilot.pause(0.05)
                if screen.step_count > 11:
                    break
            assert screen.playing and screen.step_count > 11  # running live after the burn-in
            await pilot.press("space")
            assert not screen.playing
            before = screen.step_count
            await pilot.press("s")
            assert screen.step_count == before + 1
            frame = screen.query_one(GridView).grid
            assert frame.shape == (12, 12)
            # type a seed and bring that rule back: the same first frame as the engine gives
            await pilot.click("#seed")
            screen.query_one("#seed").value = "42"
            await pilot.press("enter")
            from ncalab.nca.config import NCAConfig
            from ncalab.nca.engine import RuleBatch

            assert screen.seed == 42 and (screen.query_one(GridView).grid == RuleBatch([42], [42], NCAConfig()).frames(1)[0, 0]).all()
            await pilot.press("n")
            for _ in range(100):  # drawn in a worker thread
                await pilot.pause(0.05)
                if screen.seed != 42:
                    break
            assert screen.seed != 42
            # invalid settings are refused in place, the rule keeps running
            screen.query_one("#shape").value = "13 12 10 2"
            await pilot.click("#shape")
            await pilot.press("enter")
            assert "not divisible" in str(screen.query_one("#message").render())
            screen.query_one("#seed").value = ""
            screen.load_rule()
            assert "whole number" in str(screen.query_one("#message").render())
            await pilot.press("question_mark")
            assert isinstance(app.screen, HelpScreen)
            await pilot.press("escape")
            assert isinstance(app.screen, ExploreScreen)

    run(scenario())


def _spec_score(seed: int) -> float:
    """A rule's score as the spec defines it, measured afresh: its first 10 frames after the
    burn-in, simulated alone."""
    from ncalab.nca.config import NCAConfig
    from ncalab.nca.engine import RuleBatch
    from ncalab.nca.stream import score_window

    cfg = NCAConfig()
    return float(score_window(RuleBatch([seed], [seed], cfg).frames(cfg.score_frames), cfg)[0])


async def _next_rule(pilot, screen, key: str) -> int:
    before = screen.seed
    await pilot.press(key)
    for _ in range(400):  # drawn in a worker thread
        await pilot.pause(0.02)
        if screen.seed != before:
            return screen.seed
    raise AssertionError(f"{key!r} showed no new rule")


def test_explore_opens_in_the_band_and_b_switches_to_any_rule(tmp_path):
    async def scenario():
        app = NcalabApp(home=tmp_path, seed=11, autoplay=False)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            for _ in range(400):
                await pilot.pause(0.05)
                if screen.batch is not None:
                    break
            first = screen.seed
            assert 0.3 < _spec_score(first) < 0.4  # the code band, the default domain's
            assert screen.rule_score == pytest.approx(_spec_score(first))
            in_band = [first] + [await _next_rule(pilot, screen, "n") for _ in range(10)]
            assert len(set(in_band)) == 11 and all(0.3 < _spec_score(s) < 0.4 for s in in_band)
            info = _plain(screen.query_one("#draw-info"))
            d = screen.drawer
            assert "draws: in band 0.3-0.4" in info
            assert f"{d.in_band_count / d.scored:.0%} of {d.scored:,} random rules score in 0.3-0.4" in info
            assert d.scored >= 256 and d.in_band_count < d.scored / 2  # most random rules are not like these
            anyone = [await _next_rule(pilot, screen, "b")] + [await _next_rule(pilot, screen, "n") for _ in range(9)]
            assert "draws: any rule" in _plain(screen.query_one("#draw-info"))
            # about 1 random rule in 10 scores in the code band: ten in a row inside has odds below 1e-9
            assert any(not 0.3 < _spec_score(s) < 0.4 for s in anyone)
            verdicts = _plain(screen.query_one("#stats"))
            assert ("in band 0.3-0.4" in verdicts) == (0.3 < _spec_score(screen.seed) < 0.4)
            await _next_rule(pilot, screen, "b")  # back to the band
            assert 0.3 < _spec_score(screen.seed) < 0.4

    run(scenario())


def test_rule_draw_takes_exactly_the_rules_stage_1_would():
    import numpy as np

    from ncalab.errors import NcalabError
    from ncalab.nca.bands import domain_band
    from ncalab.nca.config import NCAConfig
    from ncalab.nca.seeds import rule_seeds
    from ncalab.nca.stream import FilteredSource
    from ncalab.services.explore import RuleDraw

    cfg, band = NCAConfig(), domain_band("code")
    source = FilteredSource(cfg, band, 5, "train", batch_rules=128)
    expected = np.concatenate([source.next_batch().rule_seeds for _ in range(2)])
    draw = RuleDraw(cfg, band, 5, batch_rules=128)
    assert [draw.next().rule_seed for _ in expected] == expected.tolist()
    assert (draw.scored, draw.in_band_count) == (source.rules_scored, source.rules_accepted)
    candidates = rule_seeds(5, "train", 0, 512).tolist()
    following = draw.next(in_band=False)  # any rule: simply the next candidate of the stream
    assert following.rule_seed == candidates[candidates.index(int(expected[-1])) + 1]
    assert following.score == pytest.approx(_spec_score(following.rule_seed))
    two_colours = RuleDraw(NCAConfig(alphabet=2), band, 5)  # two colours never reach the code band
    with pytest.raises(NcalabError, match="none of 512 random rules with these settings scores in 0.3-0.4"):
        two_colours.next(max_candidates=512)


def test_runs_screen_lists_and_details_real_runs(tmp_path, code_corpus):
    home = tmp_path / "h"
    assert main(["run", "--corpus", str(code_corpus), "--home", str(home), "--json", *MICRO]) == 0

    async def scenario():
        app = NcalabApp(home=home)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("r")
            screen = app.screen
            assert isinstance(screen, RunsScreen)
            for _ in range(30):
                await pilot.pause(0.1)
                if screen.query_one("#table").row_count:
                    break
            table = screen.query_one("#table")
            assert table.row_count == 1
            await pilot.pause(0.5)
            summary = _plain(screen.query_one("#summary"))
            assert "ppl scratch" in summary and "completed" in summary
            await pilot.press("u")  # resume of a completed experiment: refused with a message
            await pilot.pause(0.5)
            await pilot.press("e")
            assert isinstance(app.screen, ExploreScreen)

    run(scenario())


def test_unopenable_store_is_explained(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("")

    async def scenario():
        app = NcalabApp(home=blocker)
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("r")
            for _ in range(20):
                await pilot.pause(0.1)
                if "cannot open" in str(app.screen.query_one("#summary").render()):
                    break
            assert "cannot open the run store" in str(app.screen.query_one("#summary").render())

    run(scenario())


def test_launch_starts_a_background_job_that_shows_in_runs(tmp_path, code_corpus):
    import time

    from ncalab.store import RunStore
    from ncalab.tui.screens.launch import LaunchScreen

    home = tmp_path / "h"
    overrides = " ".join(a for a in MICRO if a != "--set")

    async def scenario():
        app = NcalabApp(home=home)
        async with app.run_test(size=(110, 36)) as pilot:
            await pilot.press("l")
            screen = app.screen
            assert isinstance(screen, LaunchScreen)
            screen.query_one("#seed").value = "x"
            await pilot.pause(0.5)
            assert "whole number" in str(screen.query_one("#launch-info").render())
            screen.query_one("#seed").value = "7"
            screen.query_one("#corpus").value = str(code_corpus)
            screen.query_one("#overrides").value = overrides
            await pilot.pause(0.5)
            info = _plain(screen.query_one("#launch-info"))
            assert "16,384 NCA tokens" in info and "no estimate" in info
            await pilot.press("ctrl+s")
            for _ in range(50):
                await pilot.pause(0.1)
                if isinstance(app.screen, RunsScreen):
                    break
            assert isinstance(app.screen, RunsScreen)

    run(scenario())
    store = RunStore(home)
    (exp,) = store.list_experiments()
    assert exp.seed == 7 and exp.config["data"]["corpus"] == str(code_corpus)
    end = time.time() + 120
    while store.get_experiment(exp.id).status in ("queued", "running") and time.time() < end:
        time.sleep(0.3)
    assert store.get_experiment(exp.id).status == "completed"  # it ran on after the app closed


def test_families_draw_in_band_rules_and_save_a_preset(tmp_path):
    from ncalab.nca.stream import score_window
    from ncalab.services.config import resolve_config
    from ncalab.tui.screens.gallery import GalleryScreen

    async def scenario():
        app = NcalabApp(home=tmp_path, autoplay=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("f")
            screen = app.screen
            assert isinstance(screen, GalleryScreen)
            for _ in range(100):
                await pilot.pause(0.05)
                if screen.batch is not None:
                    break
            # every rule shown is in the code band: re-score each from its own seed
            from ncalab.nca.engine import RuleBatch

            seeds = screen.batch.rule_seeds
            assert len(seeds) == 6
            scores = score_window(RuleBatch(seeds, seeds, screen.batch.cfg).frames(10), screen.batch.cfg)
            assert ((scores > 0.3) & (scores < 0.4)).all()
            assert "random rules score in 0.3-0.4" in str(screen.query_one("#histogram").render())
            screen.query_one("#band").value = "0.5 0.2"
            await pilot.click("#band")
            await pilot.press("enter")
            assert "lo < hi" not in str(screen.query_one("#gallery-message").render())  # built-in domain: band fixed
            screen.query_one("#alphabet").value = "2 2"
            screen.query_one("#family-name").value = "code-2col"
            await pilot.click("#save")
            await pilot.pause(0.2)
            assert "saved family" in str(screen.query_one("#gallery-message").render())
            screen.query_one("#family-name").value = "code"
            await pilot.click("#save")
            await pilot.pause(0.2)
            assert "built-in" in str(screen.query_one("#gallery-message").render())

    run(scenario())
    cfg = resolve_config("code-2col", "tiny", home=tmp_path)
    assert cfg.family == "code-2col" and cfg.preset == "code" and cfg.nca.alphabet == 2
    assert cfg.band().lo == 0.3 and cfg.nca.seq_len == 512
    code = main(["run", "--preset", "code-2col", "--home", str(tmp_path), "--print-config"])
    assert code == 0


def test_command_palette_runs_actions(tmp_path):
    async def scenario():
        app = NcalabApp(home=tmp_path, seed=3, autoplay=False)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = app.screen
            while screen.batch is None:
                await pilot.pause(0.05)
            first = screen.seed
            await pilot.press("ctrl+p")
            await pilot.pause(0.2)
            for ch in "next rule":
                await pilot.press("space" if ch == " " else ch)
            await pilot.pause(0.3)
            await pilot.press("enter")
            for _ in range(100):
                await pilot.pause(0.05)
                if screen.seed != first:
                    break
            assert screen.seed != first
            await pilot.press("ctrl+p")
            for ch in "go to runs":
                await pilot.press("space" if ch == " " else ch)
            await pilot.pause(0.3)
            await pilot.press("enter")
            await pilot.pause(0.3)
            assert isinstance(app.screen, RunsScreen)

    run(scenario())


def test_keys_can_be_remapped_and_a_bad_keymap_is_ignored(tmp_path, monkeypatch):
    keys = tmp_path / "keys.toml"
    keys.write_text('[keys]\n"explore.new_rule" = "x"\n')
    monkeypatch.setenv("NCALAB_KEYS", str(keys))

    async def scenario(expect_remap: bool):
        app = NcalabApp(home=tmp_path, seed=3, autoplay=False)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = app.screen
            while screen.batch is None:
                await pilot.pause(0.05)
            first = screen.seed
            await pilot.press("x")
            for _ in range(40):
                await pilot.pause(0.05)
                if screen.seed != first:
                    break
            assert (screen.seed != first) == expect_remap

    run(scenario(True))
    keys.write_text("[keys\nbroken")
    run(scenario(False))


def test_runs_filter_mark_tag_and_delete(tmp_path, code_corpus):
    from ncalab.store import RunStore

    home = tmp_path / "h"
    for seed in ("1", "2"):
        assert main(["run", "--corpus", str(code_corpus), "--home", str(home), "--seed", seed, "--json", *MICRO]) == 0
    store = RunStore(home)
    ids = [e.id for e in store.list_experiments()]

    async def scenario():
        app = NcalabApp(home=home, autoplay=False)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.press("r")
            screen = app.screen
            table = screen.query_one("#table")
            for _ in range(50):
                await pilot.pause(0.1)
                if table.row_count == 2 and screen.selected:
                    break
            assert table.row_count == 2
            # mark both: the curve panel overlays four curves (NCA and scratch of each)
            await pilot.press("space")
            await pilot.press("down")
            await pilot.press("space")
            await pilot.pause(0.8)
            assert screen.marked == set(ids)
            # tag the selected one and filter by the tag
            await pilot.press("t")
            for ch in "keep":
                await pilot.press(ch)
            await pilot.press("enter")
            await pilot.pause(0.8)
            tagged = screen.selected
            assert store.get_experiment(tagged).tags == ["keep"]
            await pilot.press("slash")
            for ch in "keep":
                await pilot.press(ch)
            await pilot.pause(0.3)
            assert table.row_count == 1
            screen.query_one("#filter").value = ""
            screen.set_focus(table)
            await pilot.pause(0.3)
            # delete asks first; "n" keeps it, "y" deletes it
            await pilot.press("x")
            await pilot.pause(0.2)
            await pilot.press("n")
            await pilot.pause(0.3)
            assert len(store.list_experiments()) == 2
            victim = screen.selected
            await pilot.press("x")
            await pilot.pause(0.2)
            await pilot.press("y")
            for _ in range(30):
                await pilot.pause(0.1)
                if len(store.list_experiments()) == 1:
                    break
            assert [e.id for e in store.list_experiments()] == [i for i in ids if i != victim]

    run(scenario())


def test_sweeps_screen_shows_the_table_live(tmp_path, code_corpus):
    import os
    import socket

    from ncalab.services import sweeps
    from ncalab.services.config import resolve_config
    from ncalab.services.experiments import execute
    from ncalab.store import RunStore
    from ncalab.tui.screens.sweeps import SweepsScreen

    store = RunStore(tmp_path / "h")
    base = resolve_config("code", "tiny", None, [MICRO[i + 1] for i in range(0, len(MICRO), 2)], corpus=str(code_corpus))
    made = sweeps.create(store, base, ["transfer.reinit=none,attn"], [0], name="what transfers")
    first, second = made["experiments"]
    assert store.claim_experiment(first, os.getpid(), socket.gethostname())
    execute(store, first)

    async def scenario():
        app = NcalabApp(home=tmp_path / "h", autoplay=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("w")
            screen = app.screen
            assert isinstance(screen, SweepsScreen)
            table = screen.query_one("#sweep-table")

            async def shown(text):
                for _ in range(100):
                    await pilot.pause(0.1)
                    if text in _plain(table):
                        return True
                return False

            assert await shown("1/2 done")
            assert "reinit=none" in _plain(table) and "★" in _plain(table)
            # the second member finishes while the screen is open: the table follows
            assert store.claim_experiment(second, os.getpid(), socket.gethostname())
            await asyncio.to_thread(execute, RunStore(tmp_path / "h"), second)
            assert await shown("2/2 done")
            row = next(r for r in sweeps.table(store, made["sweep_id"])["rows"] if r["best"])
            assert f"{row['gain']:+.3f}" in _plain(table)
            await pilot.press("k")  # one swept key: the plot stays on it
            await pilot.pause(0.5)
            assert "gain against transfer.reinit" in _plain(table)
            assert "one seed" in _plain(table)  # the same plot as `ncalab sweep plot`: every seed's gain too
            await pilot.press("u")  # nothing failed: nothing to resume
            await pilot.pause(0.5)
            assert all(e.status == "completed" for e in store.experiments_of_sweep(made["sweep_id"]))
            # a newer sweep, queued (no job started in this test): select it and cancel it
            newer = sweeps.create(store, base, ["transfer.reinit=mlp"], [0], name="queued one")
            await pilot.press("f5")
            for _ in range(50):
                await pilot.pause(0.1)
                if newer["sweep_id"] in [r["sweep_id"] for r in screen.sweeps]:
                    break
            await pilot.press("up")
            await pilot.pause(0.3)
            assert screen.selected == newer["sweep_id"]
            await pilot.press("c")
            for _ in range(50):
                await pilot.pause(0.1)
                if store.get_experiment(newer["experiments"][0]).status == "cancelled":
                    break
            assert store.get_experiment(newer["experiments"][0]).status == "cancelled"
            assert all(e.status == "completed" for e in store.experiments_of_sweep(made["sweep_id"]))

    run(scenario())


def _plain(static) -> str:
    """The text a Static shows, as the terminal would (rich renderables included)."""
    from rich.console import Console

    console = Console(width=118, record=True, file=open(os.devnull, "w"))
    console.print(static.content)
    return console.export_text()
