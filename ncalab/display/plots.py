"""Terminal plots drawn by plotext, as ANSI text: the CLI prints them, the TUI wraps them in
a rich Text. One place, so `ncalab runs plot` and the Runs screen (or `ncalab sweep plot`
and the Sweeps screen) draw the same picture."""

from __future__ import annotations

from ncalab.display.study import tokens
from ncalab.lazy import np, plotext
from ncalab.services.sweeps import gain_by_key


def curves_plot(curves: list[dict], width: int, height: int, xlabel: str = "tokens", log_y: bool = True,
                title: str | None = None, theme: str = "clear") -> str:
    """Curves ({x, y, label}) overlaid; perplexities span orders of magnitude, hence log_y."""
    plotext.clf()
    plotext.theme(theme)
    for c in curves:
        plotext.plot(c["x"], c["y"], label=c["label"], marker="braille")
    if log_y:
        plotext.yscale("log")
    if title:
        plotext.title(title)
    plotext.xlabel(xlabel)
    plotext.plotsize(max(width, 30), max(height, 8))
    return plotext.build()


def gain_plot(tab: dict, key: str, width: int, height: int, title: str | None = None) -> str | None:
    """Mean gain and each seed's gain against one swept key of a sweep table (None before
    any member has finished). Numeric keys get a numeric axis (log when it spans 20x)."""
    points = gain_by_key(tab, key)
    if not any(p["n"] for p in points):
        return None
    numeric = all(isinstance(p["value"], (int, float)) and not isinstance(p["value"], bool) for p in points)
    xs = [p["value"] if numeric else i for i, p in enumerate(points)]
    plotext.clf()
    plotext.theme("clear")
    done = [(x, p) for x, p in zip(xs, points) if p["n"]]
    plotext.plot([x for x, _ in done], [p["gain"] for _, p in done], marker="braille", label="mean gain")
    seeds = [(x, g) for x, p in zip(xs, points) for r in tab["rows"] if r["setting"][key] == p["value"] for g in r["gains"]]
    plotext.scatter([x for x, _ in seeds], [g for _, g in seeds], marker="x", label="one seed")
    plotext.hline(0.0)
    if numeric and len(xs) > 2 and min(xs) > 0 and max(xs) / min(xs) >= 20:
        plotext.xscale("log")
    if not numeric:
        plotext.xticks(xs, [str(p["value"]) for p in points])
    plotext.xlabel(key)
    plotext.ylabel("gain (1 - nca/scratch)")
    if title:
        plotext.title(title)
    plotext.plotsize(max(width, 30), max(height, 8))
    return plotext.build()


def distributions_plot(series: list[dict], width: int, height: int, lo: float = 0.0, hi: float = 0.7,
                       bins: int = 28, xlabel: str = "gzip score", marks: list[float] = ()) -> str:
    """Share of each series ({label, values}) per bin of [lo, hi], as overlaid step lines (so
    two distributions of different sizes compare); `marks` draws vertical lines (band edges)."""
    edges = np.linspace(lo, hi, bins + 1)
    centres = ((edges[:-1] + edges[1:]) / 2).tolist()
    plotext.clf()
    plotext.theme("clear")
    for s in series:
        counts, _ = np.histogram(np.clip(s["values"], lo, hi), bins=edges)
        plotext.plot(centres, (counts / max(counts.sum(), 1)).tolist(), label=s["label"], marker="braille")
    for x in marks:
        plotext.vline(x)
    plotext.xlabel(xlabel)
    plotext.ylabel("share")
    plotext.plotsize(max(width, 30), max(height, 8))
    return plotext.build()


def study_plot(grid: dict, width: int, height: int, arm: str | None = None) -> str | None:
    """A study's held-out loss against stage-2 tokens D (log x), one line per size N, for one
    arm (the first with a stored point by default), mean over the seeds stored so far. None
    while that arm has nothing stored."""
    stored = [c for c in grid["cells"] if c["losses"]]
    arm = arm or next((a for a in grid["arms"] if any(c["arm"] == a for c in stored)), None)
    mine = [c for c in stored if c["arm"] == arm]
    if not mine:
        return None
    plotext.clf()
    plotext.theme("clear")
    for n in sorted({c["n"] for c in mine}):
        line = sorted((c["d"], sum(c["losses"]) / len(c["losses"])) for c in mine if c["n"] == n)
        plotext.plot([d for d, _ in line], [loss for _, loss in line], marker="braille", label=f"N {tokens(n)}")
    plotext.xscale("log")  # budgets double or more from one to the next
    budgets = sorted({c["d"] for c in mine})
    plotext.xticks(budgets, [tokens(d) for d in budgets])  # the measured budgets, not plotext's round numbers
    plotext.xlabel("stage-2 tokens D")
    plotext.ylabel(f"held-out loss ({arm})")
    plotext.plotsize(max(width, 30), max(height, 8))
    return plotext.build()
