"""Drawing NCA grids in the terminal with rich: half-block characters, two cells per glyph row."""

from __future__ import annotations

import colorsys
from typing import TYPE_CHECKING

from rich.text import Text

if TYPE_CHECKING:  # the CLI's start-up does not pay for numpy to draw nothing
    import numpy as np

# Ten well-separated colours first (the default alphabet), then evenly spaced hues.
_BASE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def palette(n: int) -> list[str]:
    if n <= len(_BASE):
        return _BASE[:n]
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb(i / n, 0.65, 0.95 if i % 2 else 0.7)
        out.append(f"#{int(r * 255):02x}{int(g * 255):02x}{int(b * 255):02x}")
    return out


def grid_text(grid: np.ndarray, colours: list[str], cell_width: int = 2) -> Text:
    """A (H, W) grid as rich Text: each glyph row shows two grid rows with '▀' (top fg, bottom bg)."""
    h, w = grid.shape
    text = Text()
    for y in range(0, h, 2):
        for x in range(w):
            top = colours[int(grid[y, x])]
            if y + 1 < h:
                text.append("▀" * cell_width, style=f"{top} on {colours[int(grid[y + 1, x])]}")
            else:
                text.append("▀" * cell_width, style=top)
        if y + 2 < h:
            text.append("\n")
    return text
