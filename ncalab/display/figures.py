"""Figures as files: the plots of `ncalab runs plot`, `ncalab sweep plot` and the report, drawn
by matplotlib (imported only here, and only when a figure is made; the Agg canvas, never a
window), and NCA rollouts as frame strips or animated GIFs in the TUI's colours.

Sized for one column of a two-column paper (PAPER) or for the report's page (PAGE); every
plot labels its axes and has a legend when it draws more than one thing.
"""

from __future__ import annotations

import contextlib
import io
import math
from pathlib import Path

import numpy as np

from ncalab.display.grids import palette
from ncalab.display.summary import in_context_label
from ncalab.errors import NcalabError
from ncalab.lazy import loaded, matplotlib, mpl_figure, mpl_svg, mpl_ticker
from ncalab.services.report import check_out, write_bytes
from ncalab.services.sweeps import gain_by_key

PAPER = (3.4, 2.4)  # inches: a column of a two-column paper
PAGE = (5.2, 3.2)  # the report's figures, shown at most about 560 px wide
PLOT_FORMATS = ("png", "svg", "pdf")
ROLLOUT_FORMATS = ("png", "gif")
SCRATCH = "#555555"
_STYLE = {
    "font.size": 8, "axes.titlesize": 8, "axes.labelsize": 8, "legend.fontsize": 7, "xtick.labelsize": 7,
    "ytick.labelsize": 7, "axes.spines.top": False, "axes.spines.right": False, "legend.frameon": False,
    "svg.fonttype": "path",  # glyphs drawn as paths: a figure file needs no font of the reader's
    "svg.hashsalt": "ncalab", "savefig.dpi": 200, "lines.linewidth": 1.2,
}


def _matplotlib():
    try:
        loaded(matplotlib)
    except ImportError:
        raise NcalabError("figures need matplotlib, a dependency of ncalab: pip install 'matplotlib>=3.7'") from None
    return matplotlib


def load() -> None:
    """Import what a report's figures use, ahead of drawing them (see report_html.write_report_at)."""
    _matplotlib()
    loaded(mpl_svg, mpl_figure, mpl_ticker)

    _pil()


@contextlib.contextmanager
def style():
    """matplotlib's settings for ncalab's figures, for as long as a figure is drawn and saved."""
    with _matplotlib().rc_context(_STYLE):
        yield


def new_figure(size=PAPER, fixed: bool = False):
    """A figure laid out by matplotlib's constrained layout, or (``fixed``) with margins set in
    inches for curve plots: the layout pass is half the time of a small figure, which the
    report, drawing several, does not spend."""
    return mpl_figure.Figure(figsize=size, layout=None if fixed else "constrained")


def _fix_margins(fig, title: bool, legend_rows: int = 0, labels: list[str] | None = None) -> None:
    # room for tick labels of up to about 5 characters (or the longest of ``labels``, at about
    # 0.06 inch a character of the 7-point tick font), the axis labels, a title, a legend below
    w, h = fig.get_size_inches()
    left = 0.62 if labels is None else 0.2 + 0.06 * max(map(len, labels), default=4)
    bottom = 0.42 + (0.06 + 0.15 * legend_rows if legend_rows else 0)
    fig.subplots_adjust(left=min(left / w, 0.6), right=1 - 0.14 / w, top=1 - (0.3 if title else 0.1) / h,
                        bottom=bottom / h)


def colours(n: int) -> list[str]:
    """The colours of n settings: the TUI's palette, the scratch grey left for scratch."""
    return palette(max(n, 1))


# ---- curves ------------------------------------------------------------------------------------------

def curves_figure(series, xlabel: str = "tokens", ylabel: str = "validation perplexity", log_y: bool = True,
                  title: str | None = None, size=PAPER, fixed: bool = False):
    """Curves (objects with label, x, y, and optional lo, hi, kind) overlaid; a band where lo and
    hi are given (the range over seeds), scratch dashed in grey. ``fixed``: see new_figure."""
    with style():
        fig = new_figure(size, fixed)
        ax = fig.add_subplot()
        warm = [s for s in series if getattr(s, "kind", "") != "scratch"]
        cols = dict(zip(map(id, warm), colours(len(warm))))
        for s in series:
            scratch = getattr(s, "kind", "") == "scratch"
            colour = SCRATCH if scratch else cols[id(s)]
            ax.plot(s.x, s.y, color=colour, linestyle="--" if scratch else "-", label=s.label or None,
                    marker="o" if len(s.x) < 3 else None, markersize=3)  # a point or two still shows
            if getattr(s, "lo", None) is not None:
                ax.fill_between(s.x, s.lo, s.hi, color=colour, alpha=0.18, linewidth=0)
        _axes(ax, xlabel, ylabel, title, log_y=log_y and _positive(series))
        entries = sum(1 for s in series if s.label)
        _legend(fig, ax, entries, fixed)
        if fixed:
            _fix_margins(fig, bool(title), (entries + 1) // 2 if entries > 4 else 0)
    return fig


def _legend(fig, ax, n: int, fixed: bool = False) -> None:
    """Inside the axes for a few entries; below them for many, so none hides a curve."""
    if n > 4:
        fig.legend(loc="lower center" if fixed else "outside lower center", ncols=2)
    elif n > 1:
        ax.legend(loc="best")


def _positive(series) -> bool:
    return all(v > 0 for s in series for v in s.y if not math.isnan(v))


def _axes(ax, xlabel: str, ylabel: str, title: str | None, log_y: bool = False) -> None:
    if log_y:
        ax.set_yscale("log")
        # labels at 1, 2 and 5 of each decade: a log axis that spans less than a decade still reads
        ax.yaxis.set_major_locator(mpl_ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(mpl_ticker.EngFormatter(places=0, sep=""))
        ax.yaxis.set_minor_formatter(mpl_ticker.NullFormatter())
    if xlabel == "tokens":
        ax.xaxis.set_major_formatter(mpl_ticker.EngFormatter(sep=""))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(True, which="major", alpha=0.25, linewidth=0.5)


def icl_figure(series, size=PAGE, fixed: bool = False):
    """In-context accuracy per frame (series kinds are the metric names)."""
    for s in series:
        name = in_context_label(s.kind).replace(" (mean over frames)", "")
        s.label = f"{s.label}: {name}" if s.label else name
    fig = curves_figure(series, xlabel="frame of the held-out rule's sequence", ylabel="accuracy", log_y=False,
                        size=size, fixed=fixed)
    fig.axes[0].xaxis.set_major_locator(mpl_ticker.MaxNLocator(integer=True))  # frames are whole: no 2.2, 2.4, ...
    return fig


# ---- gains -------------------------------------------------------------------------------------------

def gain_figure(groups, size=None):
    """Each group's gain: every seed (dots), the mean (diamond) and mean ± 2 standard errors
    (the report's; margins fixed, see new_figure)."""
    n = len(groups)
    labels = [_short(g.label) or "gain" for g in groups]
    with style():
        fig = new_figure(size or (PAGE[0], 0.9 + 0.32 * n), fixed=True)
        ax = fig.add_subplot()
        for i, g in enumerate(groups):
            gains = [m.summary.gain for m in g.members if m.summary is not None]
            ax.scatter(gains, [i] * len(gains), s=12, color="#1f77b4", alpha=0.7, label="one seed" if i == 0 else None)
            v = g.verdict["gain"]
            if v["mean"] is not None:
                ax.scatter([v["mean"]], [i], marker="D", s=22, color="black", label="mean" if i == 0 else None)
            if v["lo"] is not None:
                ax.plot([v["lo"], v["hi"]], [i, i], color="black", linewidth=1.4,
                        label="mean ± 2 SE" if i == 0 else None)
        ax.axvline(0.0, color=SCRATCH, linestyle="--", linewidth=0.8)
        ax.set_yticks(range(n), labels)
        ax.set_ylim(n - 0.5, -0.5)
        ax.set_xlabel("gain = 1 - ppl warm / ppl scratch  (> 0: the warm start helped)")
        ax.grid(True, axis="x", alpha=0.25, linewidth=0.5)
        ax.legend(loc="best")
        _fix_margins(fig, False, labels=labels)
    return fig


def study_loss_figure(grid: dict, laws: dict, size=None):
    """A study's held-out loss against stage-2 tokens D, one panel per arm, one colour per size
    N: each seed (dots), the mean (circles) and the arm's fitted law at that N (dashed), where
    the arm has one. ``laws``: {arm: Law or None}. None when nothing is stored yet."""
    cells = [c for c in grid["cells"] if c["losses"]]
    if not cells:
        return None
    arms = [a for a in grid["arms"] if any(c["arm"] == a for c in cells)]
    ns = [s["n"] for s in grid["sizes"]]
    cols = dict(zip(ns, colours(len(ns))))
    rows = (len(arms) + 1) // 2
    with style():
        fig = new_figure(size or (PAGE[0], 0.4 + 2.0 * rows))  # constrained layout: panels of any count
        axes = fig.subplots(rows, 2 if len(arms) > 1 else 1, sharex=True, sharey=True, squeeze=False).ravel()
        d_lo, d_hi = min(grid["budgets"]), max(grid["budgets"])
        ds = np.geomspace(d_lo, d_hi, 50)
        for ax, arm in zip(axes, arms):
            for n in ns:
                mine = sorted((c for c in cells if c["arm"] == arm and c["n"] == n), key=lambda c: c["d"])
                if not mine:
                    continue
                for c in mine:
                    ax.scatter([c["d"]] * len(c["losses"]), c["losses"], s=6, color=cols[n], alpha=0.5, linewidth=0)
                ax.plot([c["d"] for c in mine], [sum(c["losses"]) / len(c["losses"]) for c in mine], marker="o",
                        markersize=3, linestyle="none", color=cols[n], label=f"N {n:.3g}")
                if laws.get(arm) is not None:
                    ax.plot(ds, laws[arm].loss(n, ds), color=cols[n], linestyle="--", linewidth=0.9)
            ax.set_xscale("log")
            ax.set_title(arm + ("" if laws.get(arm) is not None else " (no law fitted)"))
            ax.grid(True, which="major", alpha=0.25, linewidth=0.5)
        for ax in axes[len(arms):]:
            ax.set_visible(False)
        for ax in axes[-2:]:
            ax.set_xlabel("stage-2 tokens D")
        for ax in axes[::2]:
            ax.set_ylabel("held-out loss (nats/token)")
        axes[0].legend(loc="best")
    return fig


def study_transfer_figure(curves: list[dict], size=PAGE):
    """D_T / D along D = ratio x N for each source against each baseline, with its 95% paired
    bootstrap band; above 0 the warm start is worth extra language tokens. The fitted grid's
    range of N is shaded: right of it is extrapolation."""
    if not curves:
        return None
    with style():
        fig = new_figure(size, fixed=True)
        ax = fig.add_subplot()
        for c, colour in zip(curves, colours(len(curves))):
            ok = [i for i, v in enumerate(c["value"]) if v is not None and math.isfinite(v)]
            x = [c["n"][i] for i in ok]
            ax.plot(x, [c["value"][i] for i in ok], color=colour, label=c["label"])
            band = [i for i in ok if c["lo"][i] is not None and c["hi"][i] is not None
                    and math.isfinite(c["lo"][i]) and math.isfinite(c["hi"][i])]
            if band:
                ax.fill_between([c["n"][i] for i in band], [c["lo"][i] for i in band], [c["hi"][i] for i in band],
                                color=colour, alpha=0.15, linewidth=0)
        lo, hi = curves[0]["grid_n"]
        ax.axvspan(lo, hi, color=SCRATCH, alpha=0.08, linewidth=0, label="fitted grid")
        ax.axhline(0.0, color=SCRATCH, linestyle="--", linewidth=0.8)
        ax.set_xscale("log")
        _axes(ax, f"non-embedding parameters N (D = {curves[0]['ratio']:g} N)", "D_T / D  (> 0: tokens saved)", None)
        ax.legend(loc="best")
        _fix_margins(fig, False)
    return fig


def _short(label: str, width: int = 38) -> str:
    return label if len(label) <= width else label[: width - 1] + "…"


def gain_by_key_figure(tab: dict, key: str, title: str | None = None, size=PAPER):
    """`ncalab sweep plot` as a figure: the mean gain and each seed's against one swept key."""
    points = gain_by_key(tab, key)
    if not any(p["n"] for p in points):
        return None
    numeric = all(isinstance(p["value"], (int, float)) and not isinstance(p["value"], bool) for p in points)
    xs = [p["value"] if numeric else i for i, p in enumerate(points)]
    with style():
        fig = new_figure(size)
        ax = fig.add_subplot()
        done = [(x, p) for x, p in zip(xs, points) if p["n"]]
        # a line only joins values that lie on a scale; categories get their means as points
        ax.plot([x for x, _ in done], [p["gain"] for _, p in done], marker="o", markersize=3, label="mean gain",
                linestyle="-" if numeric else "none")
        seeds = [(x, g) for x, p in zip(xs, points) for r in tab["rows"] if r["setting"][key] == p["value"]
                 for g in r["gains"]]
        ax.scatter([x for x, _ in seeds], [g for _, g in seeds], marker="x", s=14, color=SCRATCH, label="one seed")
        ax.axhline(0.0, color=SCRATCH, linestyle="--", linewidth=0.8)
        if numeric and len(xs) > 2 and min(xs) > 0 and max(xs) / min(xs) >= 20:
            ax.set_xscale("log")
        if not numeric:
            ax.set_xticks(xs, [str(p["value"]) for p in points])
        _axes(ax, key, "gain (1 - nca/scratch)", title)
        ax.legend(loc="best")
    return fig


def downstream_figure(rows, size=None):
    """Difference of pass@k (warm minus scratch) with its 95% interval over items, one row each
    (rows: label, diff, ci; the report's, margins fixed as in gain_figure)."""
    rows = [r for r in rows if r[1] == r[1]]
    if not rows:
        return None
    labels = [_short(r[0], 44) for r in rows]
    with style():
        fig = new_figure(size or (PAGE[0], 0.9 + 0.28 * len(rows)), fixed=True)
        ax = fig.add_subplot()
        ys = list(range(len(rows)))
        ax.errorbar([r[1] for r in rows], ys, xerr=[r[2] for r in rows], fmt="o", markersize=3, capsize=2,
                    color="#1f77b4", label="difference, 95% interval over items")
        ax.axvline(0.0, color=SCRATCH, linestyle="--", linewidth=0.8)
        ax.set_yticks(ys, labels)
        ax.set_ylim(len(rows) - 0.5, -0.5)
        ax.set_xlabel("pass@k, warm-started minus scratch")
        ax.legend(loc="best")
        _fix_margins(fig, False, labels=labels)
    return fig


# ---- encoding and saving -----------------------------------------------------------------------------

def figure_bytes(fig, fmt: str, text_as_paths: bool = True) -> bytes:
    buf = io.BytesIO()
    with style(), _matplotlib().rc_context({"svg.fonttype": "path" if text_as_paths else "none"}):
        fig.savefig(buf, format=fmt, metadata=_metadata(fmt))
    return buf.getvalue()


def _metadata(fmt: str) -> dict:
    # no creation date: the same figure twice gives the same bytes
    return {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}.get(fmt, {})


def save_figure(fig, path: Path) -> Path:
    """Write a figure in the format its suffix names (png, svg or pdf)."""
    path = check_out(path, PLOT_FORMATS)
    write_bytes(path, figure_bytes(fig, path.suffix.lower().lstrip(".")))
    return path


# ---- NCA rollouts as images ----------------------------------------------------------------------------

def _rgb(colours: list[str]) -> np.ndarray:
    return np.array([[int(c[i : i + 2], 16) for i in (1, 3, 5)] for c in colours], dtype=np.uint8)


def grid_image(grid: np.ndarray, alphabet: int, cell: int = 8) -> np.ndarray:
    """An (H, W) grid of colour indices as an RGB image, each cell cell x cell pixels (TUI colours)."""
    img = _rgb(palette(alphabet))[np.asarray(grid, dtype=np.int64)]
    return img.repeat(cell, 0).repeat(cell, 1)


def strip_image(rows: list[np.ndarray], alphabet: int, cell: int = 6, gap: int = 4) -> np.ndarray:
    """Rows of frames ((F, H, W) each) as one RGB image: a row per rule, frames left to right."""
    tiles = [[grid_image(f, alphabet, cell) for f in frames] for frames in rows]
    h, w = tiles[0][0].shape[:2]
    cols = max(len(t) for t in tiles)
    out = np.full((len(tiles) * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, dtype=np.uint8)
    for r, row in enumerate(tiles):
        for c, tile in enumerate(row):
            out[r * (h + gap) : r * (h + gap) + h, c * (w + gap) : c * (w + gap) + w] = tile
    return out


def png_bytes(img: np.ndarray) -> bytes:
    image = _pil().fromarray(img, "RGB")
    buf = io.BytesIO()
    image.save(buf, format="PNG", optimize=True)
    return buf.getvalue()


def gif_bytes(frames: np.ndarray, alphabet: int, fps: float = 8.0, cell: int = 8) -> bytes:
    """A rollout ((F, H, W) colour indices) as an animated GIF that loops."""
    pil = _pil()
    images = [pil.fromarray(grid_image(f, alphabet, cell), "RGB") for f in frames]
    buf = io.BytesIO()
    images[0].save(buf, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(20, int(1000 / max(fps, 0.1))), loop=0)
    return buf.getvalue()


def _pil():
    try:
        from PIL import Image
    except ImportError:
        raise NcalabError("images need Pillow (it comes with matplotlib, a dependency of ncalab): pip install 'matplotlib>=3.7'") from None
    return Image


def save_rollout(frames: np.ndarray, alphabet: int, path: Path, fps: float = 8.0) -> Path:
    """A rollout as a frame strip (.png) or an animated GIF (.gif)."""
    path = check_out(path, ROLLOUT_FORMATS)
    if path.suffix.lower() == ".gif":
        data = gif_bytes(frames, alphabet, fps)
    else:
        data = png_bytes(strip_image([frames], alphabet, cell=8))
    write_bytes(path, data)
    return path
