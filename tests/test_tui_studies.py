"""The Studies screen's terminal plot. The screen itself, on a real micro study, is tested in
tests/test_study.py, beside the killed-and-resumed study it reads."""


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
