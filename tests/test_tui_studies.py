"""The Studies screen, driven with Pilot on a real store holding a real micro study."""

import asyncio
import re

import pytest
from conftest import MICRO, plain_text, settle, until

from ncalab.tui.app import NcalabApp
from ncalab.tui.screens.studies import StudiesScreen

# MICRO at two widths and two budgets, one seed, nca against scratch: 2 experiments, 4 points an arm
GRID = ["--size", "model.d_model=32,48", "--budgets", "8192,32768", "--sources", "nca", "--no-matched-scale",
        "--seeds", "1"]


@pytest.fixture(scope="module")
def study_lab(tmp_path_factory, code_corpus):
    """A store with one finished micro study, run once per module through the job queue."""
    from ncalab.cli.main import main
    from ncalab.services import study
    from ncalab.store import RunStore

    home = tmp_path_factory.mktemp("study-lab") / "h"
    assert main(["study", "--home", str(home), "--corpus", str(code_corpus), *MICRO, *GRID, "--json"]) == 0
    with RunStore(home) as store:
        (row,) = study.list_studies(store)
        return {"home": home, "grid": study.grid(store, row["sweep_id"], reap_first=False)}


# slow: its fixture trains a micro study (2 experiments, about 30 s); the fast suite keeps the Studies screen's
# snapshots (an empty store, test_tui_snapshots) and its layout with a queued study (test_tui_layout)
@pytest.mark.slow
def test_studies_screen_shows_the_grid_plot_and_answers(study_lab):
    from ncalab.display.study import tokens

    grid = study_lab["grid"]
    study_id = grid["study_id"]

    async def scenario():
        app = NcalabApp(home=study_lab["home"], autoplay=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("i")
            screen = app.screen
            assert isinstance(screen, StudiesScreen)
            view = screen.query_one("#study-view")
            await until(pilot, lambda: "bootstrap intervals" in plain_text(view), "the study's answers showing")
            assert [r["sweep_id"] for r in screen.studies] == [study_id]
            (row,) = screen.query_one("#study-list").rows
            assert row[:4] == (study_id, "2/2", "done", "2 sizes x 2 budgets x 2 arms x 1 seed")
            text = plain_text(view)
            # the grid: both arms at both sizes, both budgets, the losses the store holds
            assert "8/8 points complete" in " ".join(text.split()) and re.search(r"arm +N +D 8\.19e3 +D 3\.28e4", text)
            for arm in ("scratch", "nca"):
                for size in grid["sizes"]:
                    cells = sorted((c for c in grid["cells"] if c["arm"] == arm and c["n"] == size["n"]),
                                   key=lambda c: c["d"])
                    assert [len(c["losses"]) for c in cells] == [1, 1]
                    losses = " +".join(f"{c['losses'][0]:.4f}" for c in cells)
                    assert re.search(rf"{arm} +{re.escape(tokens(size['n']))} +{losses}", text), (arm, size, text)
            # the plot: the first arm, one line per size
            assert "scratch: held-out loss against stage-2 tokens D" in text and "(a: next arm)" in text
            assert all(f"N {tokens(s['n'])}" in text for s in grid["sizes"])
            # the answers: 4 points cannot fit 5 parameters, said in one line, no fitted number
            assert "bootstrap intervals from 200 resamples" in text
            assert "4 grid points for 5 parameters" in text and "crossover at" not in text
            fitted = screen.fitted[study_id]
            await pilot.press("a")
            assert "nca: held-out loss against stage-2 tokens D" in plain_text(view)
            await pilot.press("a")
            assert "scratch: held-out loss" in plain_text(view)
            # a refresh with the same points keeps the answers; m refits with the CLI's 1000
            await pilot.press("f5")
            await settle(pilot)
            assert screen.fitted[study_id] is fitted
            await pilot.press("m")
            await until(pilot, lambda: "bootstrap intervals from 1000 resamples" in plain_text(view),
                        "the answers refitted with 1000 resamples")
            assert "4 grid points for 5 parameters" in plain_text(view)

    asyncio.run(scenario())


def test_study_plot_is_none_until_a_point_is_stored():
    from ncalab.display.plots import study_plot
    from ncalab.display.study import tokens

    cells = [{"arm": a, "n": n, "d": d, "losses": []} for a in ("scratch", "nca") for n in (24576, 55296)
             for d in (8192, 32768)]
    grid = {"arms": ["scratch", "nca"], "cells": cells}
    assert study_plot(grid, 80, 14) is None
    cells[-1]["losses"] = [3.0, 3.2]  # nca, the larger N, the longer D: two seeds
    assert study_plot(grid, 80, 14, arm="scratch") is None
    plot = study_plot(grid, 80, 14)  # the first arm with a point
    assert f"N {tokens(55296)}" in plot and f"N {tokens(24576)}" not in plot and "held-out loss (nca)" in plot
    assert tokens(32768) in plot and "3.1" in plot  # the budget on the axis, the mean of the two seeds
