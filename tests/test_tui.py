"""The Textual app, driven with Pilot on a real temporary store."""

import asyncio
import os

import pytest
from textual.command import CommandList, CommandPalette

from conftest import MICRO, plain_text, settle, until, wait_until
from ncalab.cli.main import main
from ncalab.tui.app import NcalabApp
from ncalab.tui.screens.confirm import ConfirmScreen
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
            # the engine loads in a worker thread, then the animation timer steps the rule
            await until(pilot, lambda: screen.step_count > 11, "Explore playing past the burn-in (step > 11)",
                        timeout=60)
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
            await until(pilot, lambda: screen.seed != 42, "'n' drawing a new rule in place of 42")  # a worker thread
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


def test_a_playing_explore_counts_as_a_live_view_until_paused_or_closed(tmp_path):
    from types import SimpleNamespace

    from ncalab.jobs.allocation import cores, live_views, threads_for

    idle = SimpleNamespace(home=tmp_path, list_experiments=lambda status=None: [])  # a store with nothing running

    async def scenario():
        app = NcalabApp(home=tmp_path, seed=5)
        async with app.run_test(size=(100, 32)) as pilot:
            screen = app.screen
            await until(pilot, lambda: screen.batch is not None, "Explore's first rule loading", timeout=60)
            assert screen.playing
            screen.mark_live()
            await settle(pilot)
            assert live_views(tmp_path) == 1
            # a job about to start shares the cores with the playing view
            assert threads_for(idle, starting=True) == max(1, cores() // 2)
            await pilot.press("space")
            assert not screen.playing
            screen.mark_live()
            await settle(pilot)
            assert live_views(tmp_path) == 0  # paused: it uses no core
            assert threads_for(idle, starting=True) == cores()
            await pilot.press("space")
            assert screen.playing
            screen.mark_live()
            await settle(pilot)
            assert live_views(tmp_path) == 1
        assert live_views(tmp_path) == 0  # the app closed while playing: the mark went with it

    run(scenario())


def test_a_live_view_marks_nothing_where_no_store_exists(tmp_path):
    from ncalab.jobs.allocation import live_views, mark_live_view

    home = tmp_path / "no-store-yet"
    mark_live_view(home)
    mark_live_view(home, playing=False)
    assert not home.exists() and live_views(home) == 0


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
    await until(pilot, lambda: screen.seed != before, f"{key!r} showing a new rule")  # drawn in a worker thread
    return screen.seed


def test_explore_opens_in_the_band_and_b_switches_to_any_rule(tmp_path):
    async def scenario():
        app = NcalabApp(home=tmp_path, seed=11, autoplay=False)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            await until(pilot, lambda: screen.batch is not None, "Explore's first rule loading", timeout=60)
            first = screen.seed
            assert 0.3 < _spec_score(first) < 0.4  # the code band, the default domain's
            assert screen.rule_score == pytest.approx(_spec_score(first))
            in_band = [first] + [await _next_rule(pilot, screen, "n") for _ in range(10)]
            assert len(set(in_band)) == 11 and all(0.3 < _spec_score(s) < 0.4 for s in in_band)
            info = plain_text(screen.query_one("#draw-info"))
            d = screen.drawer
            assert "draws: in band 0.3-0.4" in info
            assert f"{d.in_band_count / d.scored:.0%} of {d.scored:,} random rules score in 0.3-0.4" in info
            assert d.scored >= 256 and d.in_band_count < d.scored / 2  # most random rules are not like these
            anyone = [await _next_rule(pilot, screen, "b")] + [await _next_rule(pilot, screen, "n") for _ in range(9)]
            assert "draws: any rule" in plain_text(screen.query_one("#draw-info"))
            # about 1 random rule in 10 scores in the code band: ten in a row inside has odds below 1e-9
            assert any(not 0.3 < _spec_score(s) < 0.4 for s in anyone)
            verdicts = plain_text(screen.query_one("#stats"))
            assert ("in band 0.3-0.4" in verdicts) == (0.3 < _spec_score(screen.seed) < 0.4)
            await _next_rule(pilot, screen, "b")  # back to the band
            assert 0.3 < _spec_score(screen.seed) < 0.4

    run(scenario())


def test_stepping_shows_each_windows_score_computed_off_the_ui_thread(tmp_path):
    """The rolling window is scored in a thread; stepping faster than it shows the newest
    window's statistics once they arrive, and a step at rest always ends on its own."""
    from ncalab.services.explore import window_stats

    async def scenario():
        app = NcalabApp(home=tmp_path, seed=3, autoplay=False)
        async with app.run_test(size=(100, 30)) as pilot:
            screen = app.screen
            await until(pilot, lambda: screen.batch is not None, "Explore's first rule loading", timeout=60)
            for _ in range(14):  # as fast as the keys come: 15 frames, 6 full windows
                await pilot.press("s")
            want = window_stats(list(screen.frames), screen.cfg)
            shown = await until(pilot, lambda: screen.window_stats and screen.window_stats[0] == screen.step_count,
                                "the current window's statistics")
            assert shown and screen.window_stats[1] == want
            await until(pilot, lambda: f"now {want['score']:.3f}" in plain_text(screen.query_one("#stats")),
                        "the window's score drawn (at most 0.1 s after it came)")
            assert screen.scores and screen.scores[-1] == want["score"] and len(screen.scores) <= 6  # one per window at most

    run(scenario())


def test_latest_only_computes_the_newest_request_and_drops_the_ones_it_could_not_reach():
    import threading

    from ncalab.tui.latest import LatestOnly

    gate, done, seen = threading.Event(), threading.Event(), []

    def compute(job):
        gate.wait()
        return job * 10

    def deliver(job, result):
        seen.append((job, result))
        if job == 9:
            done.set()

    worker = LatestOnly(compute, deliver)
    for job in range(10):
        worker.submit(job)  # the thread takes one, the rest replace each other while it waits
    gate.set()
    assert done.wait(10)
    worker.close()
    assert seen[-1] == (9, 90) and len(seen) <= 2 and [j for j, _ in seen] == sorted(j for j, _ in seen)


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


def test_runs_screen_lists_and_details_real_runs(micro_home):
    home = micro_home

    async def scenario():
        app = NcalabApp(home=home)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("r")
            screen = app.screen
            assert isinstance(screen, RunsScreen)
            table = screen.query_one("#table")
            await until(pilot, lambda: table.row_count, "the Runs table filling")
            assert table.row_count == 1
            await until(pilot, lambda: "ppl scratch" in plain_text(screen.query_one("#summary")),
                        "the selected run's details loading")
            summary = plain_text(screen.query_one("#summary"))
            assert "ppl scratch" in summary and "completed" in summary
            await pilot.press("u")  # resume of a completed experiment: refused with a message
            await until(pilot, lambda: _notified(app, "nothing to resume"), "the refused resume's message")
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
            await until(pilot, lambda: "cannot open" in str(app.screen.query_one("#summary").render()),
                        "Runs explaining the store it cannot open")
            assert "cannot open the run store" in str(app.screen.query_one("#summary").render())

    run(scenario())


# slow (end to end); the fast suite keeps the Launch screen's config (test_tui_sources) and the Runs
# screen on stored runs
@pytest.mark.slow
def test_launch_starts_a_background_job_that_shows_in_runs(tmp_path, code_corpus):
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
            panel = screen.query_one("#launch-info")
            await until(pilot, lambda: "whole number" in str(panel.render()), "Launch refusing the seed 'x'")
            assert "whole number" in str(screen.query_one("#launch-info").render())
            screen.query_one("#seed").value = "7"
            screen.query_one("#corpus").value = str(code_corpus)
            screen.query_one("#overrides").value = overrides
            await until(pilot, lambda: "16,384 NCA tokens" in plain_text(panel),
                        "Launch showing the budget of the overrides")
            info = plain_text(screen.query_one("#launch-info"))
            assert "16,384 NCA tokens" in info and "no estimate" in info
            await pilot.press("ctrl+s")
            await until(pilot, lambda: isinstance(app.screen, RunsScreen), "Runs opening after the launch")
            assert isinstance(app.screen, RunsScreen)

    run(scenario())
    store = RunStore(home)
    (exp,) = store.list_experiments()
    assert exp.seed == 7 and exp.config["data"]["corpus"] == str(code_corpus)
    wait_until(lambda: store.get_experiment(exp.id).status not in ("queued", "running"), "the launched job ending",
               timeout=120, poll=0.3)
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
            await until(pilot, lambda: screen.batch is not None, "Families showing its first rules", timeout=60)
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
            message = screen.query_one("#gallery-message")
            await pilot.click("#save")
            await until(pilot, lambda: "saved family" in str(message.render()), "the family 'code-2col' saved")
            assert "saved family" in str(screen.query_one("#gallery-message").render())
            screen.query_one("#family-name").value = "code"
            save = screen.query_one("#save")  # a button takes no click while it shows the last one (0.2 s)
            await until(pilot, lambda: not save.has_class("-active"), "the Save button ready for another click")
            await pilot.click("#save")
            await until(pilot, lambda: "built-in" in str(message.render()), "the name 'code' refused")
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
            await until(pilot, lambda: screen.batch is not None, "Explore's first rule loading", timeout=60)
            first = screen.seed
            await pilot.press("ctrl+p")
            await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the command palette opening")
            for ch in "next rule":
                await pilot.press("space" if ch == " " else ch)
            await until(pilot, lambda: "next rule" in _first_command(app), "the palette offering 'next rule' first")
            await pilot.press("enter")
            await until(pilot, lambda: screen.seed != first, "the palette's 'next rule' drawing a new rule")
            assert screen.seed != first
            await pilot.press("ctrl+p")
            await until(pilot, lambda: isinstance(app.screen, CommandPalette), "the command palette opening again")
            for ch in "go to runs":
                await pilot.press("space" if ch == " " else ch)
            await until(pilot, lambda: "go to runs" in _first_command(app), "the palette offering 'go to runs' first")
            await pilot.press("enter")
            await until(pilot, lambda: isinstance(app.screen, RunsScreen), "the palette's 'go to runs' opening Runs")
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
            await until(pilot, lambda: screen.batch is not None, "Explore's first rule loading", timeout=60)
            first = screen.seed
            await pilot.press("x")
            await settle(pilot)  # a draw that "x" started (remapped) has shown its rule; unmapped, none started
            assert (screen.seed != first) == expect_remap

    run(scenario(True))
    keys.write_text("[keys\nbroken")
    run(scenario(False))


# slow (end to end); the fast suite keeps test_runs_screen_lists_and_details_real_runs
@pytest.mark.slow
def test_runs_filter_mark_tag_and_delete(micro_home, code_corpus):
    from ncalab.store import RunStore

    home = micro_home  # seed 0; seed 1 is trained here
    assert main(["run", "--corpus", str(code_corpus), "--home", str(home), "--seed", "1", "--json", *MICRO]) == 0
    store = RunStore(home)
    ids = [e.id for e in store.list_experiments()]

    async def scenario():
        app = NcalabApp(home=home, autoplay=False)
        async with app.run_test(size=(140, 40)) as pilot:
            await pilot.press("r")
            screen = app.screen
            table = screen.query_one("#table")
            await until(pilot, lambda: table.row_count == 2 and screen.selected,
                        "the Runs table showing both experiments")
            assert table.row_count == 2
            # mark both: the curve panel overlays four curves (NCA and scratch of each)
            await pilot.press("space")
            await pilot.press("down")
            await pilot.press("space")
            await until(pilot, lambda: screen.marked == set(ids), "both experiments marked")
            assert screen.marked == set(ids)
            # tag the selected one and filter by the tag
            await pilot.press("t")
            for ch in "keep":
                await pilot.press(ch)
            await pilot.press("enter")
            await until(pilot, lambda: store.get_experiment(screen.selected).tags, "the tag stored")
            tagged = screen.selected
            assert store.get_experiment(tagged).tags == ["keep"]
            await pilot.press("slash")
            for ch in "keep":
                await pilot.press(ch)
            await until(pilot, lambda: table.row_count == 1, "the filter 'keep' leaving one row")
            assert table.row_count == 1
            screen.query_one("#filter").value = ""
            screen.set_focus(table)
            await until(pilot, lambda: table.row_count == 2 and table.has_focus,
                        "the filter emptied and the table focused")
            # delete asks first; "n" keeps it, "y" deletes it
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the delete question")
            await pilot.press("n")
            await until(pilot, lambda: app.screen is screen, "the delete question answered 'n'")
            assert len(store.list_experiments()) == 2
            victim = screen.selected
            await pilot.press("x")
            await until(pilot, lambda: isinstance(app.screen, ConfirmScreen), "the delete question, again")
            await pilot.press("y")
            await until(pilot, lambda: len(store.list_experiments()) == 1, "the experiment deleted after 'y'")
            assert [e.id for e in store.list_experiments()] == [i for i in ids if i != victim]

    run(scenario())


def test_runs_details_loaded_late_for_an_older_selection_never_replace_the_newer(micro_home, code_corpus,
                                                                                 monkeypatch):
    """The first experiment selected loads slowly; the selection moves on and the second one's
    details show; when the first load finally ends, its details are stale and the second's stay."""
    import threading

    from ncalab.jobs import control
    from ncalab.services.config import resolve_config
    from ncalab.services.experiments import submit
    from ncalab.store import RunStore

    home = micro_home  # one finished experiment; a queued one (newest, so first in the table) is added
    cfg = resolve_config("code", "tiny", None, [MICRO[i + 1] for i in range(0, len(MICRO), 2)],
                         corpus=str(code_corpus), seed=1)
    with RunStore(home) as store:
        submit(cfg, store)
        ids = [e.id for e in store.list_experiments()]
    # The log tail is the last thing a details load reads: the first experiment's loads wait there
    # until the test lets them go, and each says when it has read it all.
    real_follow_log, slow, slow_loads, started, released = control.follow_log, [], [], threading.Event(), threading.Event()

    def follow_log(store, exp_id, follow=True, poll=0.5):
        slow[:] = slow or [exp_id]
        if exp_id != slow[0]:
            yield from real_follow_log(store, exp_id, follow, poll)
            return
        finished = threading.Event()
        slow_loads.append(finished)
        started.set()
        released.wait(60)
        yield from real_follow_log(store, exp_id, follow, poll)
        finished.set()

    monkeypatch.setattr(control, "follow_log", follow_log)

    async def scenario():
        app = NcalabApp(home=home, autoplay=False)
        async with app.run_test(size=(140, 40)) as pilot:
            try:
                await pilot.press("r")
                screen = app.screen
                # a worker waits in follow_log: awaiting the app's workers would wait for it too
                assert await asyncio.to_thread(started.wait, 60), "the first selection's details never began loading"
                assert screen.selected == slow[0] == ids[0]
                await pilot.press("down")
                summary = screen.query_one("#summary")
                await until(pilot, lambda: screen.selected == ids[1] and ids[1] in plain_text(summary),
                            "the second experiment's details showing")
                released.set()
                await until(pilot, lambda: all(f.is_set() for f in slow_loads), "the first selection's loads ending")
                await settle(pilot)
                shown = plain_text(summary)
                assert ids[1] in shown and "completed" in shown and ids[0] not in shown
                assert screen.selected == ids[1]
            finally:
                released.set()

    run(scenario())


# slow (end to end); the fast suite keeps the Sweeps screen's snapshots (test_tui_snapshots)
@pytest.mark.slow
def test_sweeps_screen_shows_the_table_live(tmp_path, code_corpus):
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
                return await until(pilot, lambda: text in plain_text(table), f"the sweep table showing {text!r}")

            assert await shown("1/2 done")
            assert "reinit=none" in plain_text(table) and "★" in plain_text(table)
            # the second member finishes while the screen is open: the table follows
            assert store.claim_experiment(second, os.getpid(), socket.gethostname())
            await asyncio.to_thread(execute, RunStore(tmp_path / "h"), second)
            assert await shown("2/2 done")
            row = next(r for r in sweeps.table(store, made["sweep_id"])["rows"] if r["best"])
            assert f"{row['gain']:+.3f}" in plain_text(table)
            await pilot.press("k")  # one swept key: the plot stays on it
            assert await shown("gain against transfer.reinit")
            assert "gain against transfer.reinit" in plain_text(table)
            assert "one seed" in plain_text(table)  # the same plot as `ncalab sweep plot`: every seed's gain too
            await pilot.press("u")  # nothing failed: nothing to resume
            await until(pilot, lambda: _notified(app, "nothing to resume"), "the sweep's 'nothing to resume'")
            assert all(e.status == "completed" for e in store.experiments_of_sweep(made["sweep_id"]))
            # a newer sweep, queued (no job started in this test): select it and cancel it
            newer = sweeps.create(store, base, ["transfer.reinit=mlp"], [0], name="queued one")
            await pilot.press("f5")
            await until(pilot, lambda: newer["sweep_id"] in [r["sweep_id"] for r in screen.sweeps],
                        "the newer sweep listed")
            await pilot.press("up")
            await until(pilot, lambda: screen.selected == newer["sweep_id"], "the newer sweep selected")
            assert screen.selected == newer["sweep_id"]
            await pilot.press("c")
            await until(pilot, lambda: store.get_experiment(newer["experiments"][0]).status == "cancelled",
                        "the newer sweep's member cancelled")
            assert store.get_experiment(newer["experiments"][0]).status == "cancelled"
            assert all(e.status == "completed" for e in store.experiments_of_sweep(made["sweep_id"]))

    run(scenario())


def _notified(app, text: str) -> bool:
    """Whether the app has notified the user of something containing ``text``."""
    return any(text in str(n.message) for n in app._notifications)


def _first_command(app) -> str:
    """The command the palette would run on enter (its highlighted one), in lower case."""
    commands = app.screen.query_one(CommandList)
    if commands.highlighted is None:
        return ""
    prompt = commands.get_option_at_index(commands.highlighted).prompt
    return str(getattr(prompt, "plain", prompt)).lower()
