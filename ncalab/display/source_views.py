"""How the terminal lab draws a stage-1 source's sequences: a source with a 2-D grid (ECA's
space-time diagram) as that grid; Dyck, shuffle-Dyck and ww as depth profiles (stack depth
over position, in block characters); any other source as its tokens, wrapped into rows."""

from __future__ import annotations

from collections.abc import Callable

from rich.text import Text

from ncalab.display.grids import grid_text, palette
from ncalab.lazy import np

BARS = " ▁▂▃▄▅▆▇█"  # eighths of a cell, bottom up


def bracket_depth(seq: np.ndarray, vocab_size: int) -> np.ndarray:
    """Open brackets after each token: ids below vocab_size / 2 open, the others close."""
    return np.cumsum(np.where(np.asarray(seq) < vocab_size // 2, 1, -1))


def copy_depth(seq: np.ndarray, vocab_size: int) -> np.ndarray:
    """ww's stack depth: symbols of a word w written and not yet copied, rising through w and
    falling through its copy. A word is the longest prefix of the rest that is repeated right
    after it; a last word cut off by the sequence's end only rises."""
    seq = np.asarray(seq)
    out = np.empty(len(seq), dtype=np.int64)
    pos = 0
    while pos < len(seq):
        rest = seq[pos:]
        size = next((n for n in range(len(rest) // 2, 0, -1) if np.array_equal(rest[:n], rest[n : 2 * n])), 0)
        if size == 0:
            out[pos:] = np.arange(1, len(rest) + 1)
            break
        out[pos : pos + size] = np.arange(1, size + 1)
        out[pos + size : pos + 2 * size] = np.arange(size - 1, -1, -1)
        pos += 2 * size
    return out


# source name -> its depth along a sequence (sequence, vocabulary) -> depths
PROFILES: dict[str, Callable[[np.ndarray, int], np.ndarray]] = {
    "dyck": bracket_depth, "shuffle_dyck": bracket_depth, "ww": copy_depth,
}


def view_kind(name: str, grid: np.ndarray | None) -> str:
    """How a source is drawn: "grid" (its own 2-D picture), "profile" (depth) or "tokens"."""
    if grid is not None:
        return "grid"
    return "profile" if name in PROFILES else "tokens"


def profile(name: str, seq: np.ndarray, vocab_size: int) -> np.ndarray:
    return PROFILES[name](seq, vocab_size)


def profile_lines(depth: np.ndarray, height: int, top: int | None = None) -> list[str]:
    """Depths as vertical bars, one column a position, `height` lines (the first the highest);
    `top` is the depth that fills a column (the largest here when None)."""
    depth = np.asarray(depth, dtype=np.float64)
    top = max(1, int(top if top is not None else (depth.max() if len(depth) else 1)))
    eighths = np.clip(np.round(depth / top * height * 8), 0, height * 8).astype(np.int64)
    lines = []
    for row in range(height - 1, -1, -1):  # the line `row` cells above the bottom
        fill = np.clip(eighths - row * 8, 0, 8)
        lines.append("".join(BARS[f] for f in fill.tolist()))
    return lines


def token_rows(seq: np.ndarray, width: int, colours: int = 10) -> np.ndarray:
    """Tokens wrapped into rows of `width`, each shown as its id modulo `colours` (a source
    without a picture of its own)."""
    seq = np.asarray(seq)
    rows = len(seq) // width
    return (seq[: rows * width] % colours).reshape(rows, width).astype(np.uint8)


def picture(name: str, seq: np.ndarray, grid: np.ndarray | None, vocab_size: int, width: int, height: int) -> Text:
    """A small picture of one sequence, `width` columns and `height` lines at most (a card)."""
    kind = view_kind(name, grid)
    if kind == "grid":
        g = grid[: 2 * height, :width]
        return grid_text(g, palette(max(2, int(g.max()) + 1)), cell_width=1)
    if kind == "profile":
        depth = profile(name, seq, vocab_size)[:width]
        return Text("\n".join(profile_lines(depth, height)), style="green")
    g = token_rows(seq, width)[: 2 * height]
    return grid_text(g, palette(10), cell_width=1)


def stat_text(value) -> str:
    """A statistic as a panel shows it: 1,234, 0.489 or the source's own text."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:,}" if isinstance(value, int) else f"{value:g}"
