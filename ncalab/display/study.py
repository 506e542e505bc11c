"""A scaling study's answers as rich renderables, for the CLI and the TUI alike: the answers
first (crossover, predictions at the asked points), then each arm's fitted law beside its
leave-one-out error, the measured gains and D_T at the grid points, and for an arm that could
not be fitted its reason and raw points (never a fitted number).

Token counts and sizes are written one way throughout: 3 significant digits, 1.23e9.
"""

from __future__ import annotations

import math

from rich import box
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ncalab.scaling.answers import ArmFit, Comparison, Estimate, PairAnswer, Prediction, StudyAnswers
from ncalab.scaling.law import PARAMETERS, CannotFit

LAWS_TITLE = "fitted laws L(N, D) = E + A/N^alpha + B/D^beta"


def tokens(x: float | None) -> str:
    """1.23e9, -4.5e8, inf; '-' for nothing. One format for every token count and size."""
    if x is None or math.isnan(x):
        return "-"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    if x == 0:
        return "0"
    mantissa, exponent = f"{x:.2e}".split("e")
    return f"{float(mantissa):.3g}e{int(exponent)}"


def _table(title: str) -> Table:
    return Table(title=title, box=box.SIMPLE_HEAD, title_justify="left", pad_edge=False, collapse_padding=True)


def _interval(e: Estimate, fmt) -> str:
    """'value [lo, hi]', or 'value (why no interval)', or the reason alone when there is no value."""
    if e.value is None:
        return e.reason or "-"
    if e.lo is None or e.hi is None:
        return f"{fmt(e.value)} ({e.reason})" if e.reason else fmt(e.value)
    return f"{fmt(e.value)} [{fmt(e.lo)}, {fmt(e.hi)}]"


def _gain(x: float) -> str:
    return f"{x:+.3f}"


def _transfer(e: Estimate, baseline: str) -> str:
    """D_T in tokens; +inf is the source below anything the baseline reaches at that size."""
    text = _interval(e, tokens)
    if e.value is not None and math.isinf(e.value) and e.value > 0:
        return text.replace("inf", f"inf (beyond {baseline}'s reach)", 1)
    return text


def _times(x: float) -> str:
    return f"{x:+.2f}" if abs(x) < 1000 else tokens(x)


def _multiple(e: Estimate) -> str:
    """'+1.02x [+0.85, +1.20]': the x once, on the value, to keep the column narrow."""
    if e.value is None or e.lo is None or e.hi is None:
        return _interval(e, lambda x: _times(x) + "x")
    return f"{_times(e.value)}x [{_times(e.lo)}, {_times(e.hi)}]"


def _grid(pred: Prediction) -> str:
    """'extrapolated beyond the grid (N 1e5-1e7, D 1e6-1e8)': the range both arms were measured on."""
    n, d = pred.n_range, pred.d_range
    return f"extrapolated beyond the grid (N {tokens(n[0])}-{tokens(n[1])}, D {tokens(d[0])}-{tokens(d[1])})"


def _crossover_line(pair: PairAnswer) -> Text:
    text = pair.crossover if isinstance(pair.crossover, str) else pair.crossover.text()
    return Text(f"{pair.source} vs {pair.baseline}: {text}")


def _predictions(pair: PairAnswer) -> Table | Text:
    """The two laws' answers at the asked points, or the one reason there are none."""
    if pair.predictions[0].gain.value is None:
        return Text(f"{pair.source} vs {pair.baseline}: {pair.predictions[0].gain.reason}")
    t = _table(f"{pair.source} vs {pair.baseline}: predicted by the two laws (95% paired bootstrap intervals)")
    for c in ("N", "D", "gain", "D_T (tokens)", "D_T / D", "where"):
        t.add_column(c, justify="left" if c == "where" else "right", no_wrap=True)
    for p in pair.predictions:
        t.add_row(tokens(p.n), tokens(p.d), _interval(p.gain, _gain), _transfer(p.transfer, pair.baseline),
                  _multiple(p.multiple), "extrapolated" if p.extrapolated else "inside the grid")
    beyond = [p for p in pair.predictions if p.extrapolated]
    if beyond:  # the grid's range once, under the table: a column of it would not fit 120 characters
        t.caption, t.caption_justify = _grid(beyond[0]), "left"
    return t


def _parameter_cells(arm: ArmFit) -> list[str]:
    """Each parameter from the full fit with its 95% bootstrap interval."""
    law = arm.fit.law  # type: ignore[union-attr]
    try:
        intervals = arm.bootstrap.parameter_intervals()  # type: ignore[union-attr]
    except CannotFit as e:
        return [f"{getattr(law, name):.3g} ({e})" for name in PARAMETERS]
    return [f"{i.estimate:.3g} [{i.lo:.3g}, {i.hi:.3g}]" for i in intervals.values()]


def _loo_cells(arm: ArmFit) -> list[str]:
    loo = arm.loo
    if loo is None or loo.rmse_log is None:
        return ["none predicted", "none predicted"]
    return [f"{loo.rmse_log:.4f} ({len(loo.predicted)}/{len(loo.points)} points)", f"{loo.mean_abs_relative_error:.2%}"]


def _laws_table(fitted: list[ArmFit]) -> Table:
    """One column per fitted arm: parameters with intervals, and beside them how well the law
    predicts each grid point when that point is left out."""
    t = _table(f"{LAWS_TITLE}: 95% bootstrap intervals; leave-one-out error beside the fit")
    t.add_column("")
    for arm in fitted:
        t.add_column(arm.arm, justify="right")
    columns = [_parameter_cells(a) + _loo_cells(a) for a in fitted]
    labels = [*PARAMETERS, "leave-one-out RMSE of log L", "leave-one-out mean |relative error|"]
    for row, label in enumerate(labels):
        t.add_row(label, *(col[row] for col in columns))
    t.add_row("grid points / runs", *(f"{a.fit.points} / {a.fit.observations}" for a in fitted))  # type: ignore[union-attr]
    t.add_row("resamples fitted", *(f"{len(a.bootstrap.params) - a.bootstrap.failed}/{len(a.bootstrap.params)}"  # type: ignore[union-attr]
                                    for a in fitted))
    return t


def _measured(c: Comparison) -> Table | Text:
    """Gain paired by seed and D_T from the baseline's law at each grid point both arms measured."""
    if not c.points:
        return Text(f"{c.source} vs {c.baseline}: no grid point measured by both")
    counts = {len(p.seeds) for p in c.points}
    one = counts.pop() if len(counts) == 1 else None  # the same count everywhere: said once
    seeds = "seeds" if one is None else f"{one} seed" + ("s" if one != 1 else "")
    dt = "" if c.transfer_reason else f"; D_T from {c.baseline}'s law, 95% over its bootstrap"
    t = _table(f"{c.source} vs {c.baseline}: measured (gain paired by seed, {seeds}, 95% t-interval{dt})")
    columns = ["N", "D", *(["seeds"] if seeds == "seeds" else []), f"L {c.source}", f"L {c.baseline}",
               "gain", "D_T (tokens)", "D_T / D"]
    for col in columns:
        t.add_column(col, justify="right", no_wrap=True)
    for p in c.points:
        dt, multiple = ("-", "-") if c.transfer_reason else (_transfer(p.transfer, c.baseline), _multiple(p.multiple))
        t.add_row(tokens(p.n), tokens(p.d), *([str(len(p.seeds))] if seeds == "seeds" else []), f"{p.source_loss:.4f}",
                  f"{p.baseline_loss:.4f}", _interval(p.gain, _gain), dt, multiple)
    if c.transfer_reason:
        t.caption, t.caption_justify = c.transfer_reason, "left"
    return t


def _raw(arm: ArmFit) -> Table:
    """An arm without a law: its measured losses only."""
    t = _table(f"{arm.arm}: measured points (no law fitted)")
    for c in ("N", "D", "seed", "loss"):
        t.add_column(c, justify="right")
    for p in arm.points:
        t.add_row(tokens(p.n), tokens(p.d), str(p.seed), f"{p.loss:.4f}")
    return t


def study_renderables(ans: StudyAnswers) -> list[Table | Text]:
    """The study's answers, then the fits behind them, then the measurements (CLI and TUI)."""
    out: list[Table | Text] = []
    for pair in ans.pairs:
        out.append(_crossover_line(pair))
        if pair.predictions:
            out.append(_predictions(pair))
    fitted = [a for a in ans.fits.values() if a.fitted]
    if fitted:
        out.append(_laws_table(fitted))
    out.extend(_measured(pair.comparison) for pair in ans.pairs)
    for arm in ans.fits.values():
        if not arm.fitted:
            reason = arm.reason or ""  # it names the arm ("cannot fit nca: ..."); otherwise the arm is said first
            out += [Text(reason if arm.arm in reason else f"{arm.arm}: {reason}"), _raw(arm)]
    return out


def grid_table(grid: dict) -> Group:
    """A study's declared grid with what is stored so far: one row per arm and size, one column
    per budget D, each cell the mean held-out loss over the seeds stored (and how many of the
    declared seeds that is, while some are missing)."""
    seeds = len(grid["seeds"])
    done = sum(1 for c in grid["cells"] if len(c["losses"]) >= seeds)
    status = ", ".join(f"{n} {s}" for s, n in sorted(grid["status"].items()))
    title = Text(f"study {grid['study_id']}{' (' + grid['name'] + ')' if grid.get('name') else ''}: held-out loss "
                 f"(nats/token), mean over the seeds stored", style="bold")
    footer = Text(f"{done}/{len(grid['cells'])} points complete; {grid['members']} experiments: {status}", style="dim")
    t = Table(box=box.SIMPLE_HEAD, pad_edge=False, collapse_padding=True)  # its title and footer are lines of their own:
    # a table's own title wraps at the table's width
    t.add_column("arm")
    t.add_column("N", justify="right")
    for d in grid["budgets"]:
        t.add_column(f"D {tokens(d)}", justify="right", no_wrap=True)
    by_row: dict[tuple, dict] = {}
    for c in grid["cells"]:
        by_row.setdefault((c["arm"], c["n"]), {})[c["d"]] = c["losses"]
    for (arm, n), row in by_row.items():
        cells = []
        for d in grid["budgets"]:
            losses = row.get(d, [])
            if not losses:
                cells.append("-")
                continue
            mean = sum(losses) / len(losses)
            cells.append(f"{mean:.4f}" + ("" if len(losses) >= seeds else f" ({len(losses)}/{seeds})"))
        t.add_row(arm, tokens(n), *cells)
    return Group(title, t, footer)
