"""A live NCA grid drawn with half-block characters: two grid rows per terminal row.

Drawn line by line from cached styles (Textual's line API): a 64x64 grid is 2,048 glyphs a
frame, too many to push through rich Text markup at interactive rates.
"""

from __future__ import annotations

import numpy as np
from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from ncalab.display.grids import palette


class GridView(Widget):
    """Shows one (H, W) grid; ``update_grid`` swaps it and repaints."""

    DEFAULT_CSS = """
    GridView { width: auto; height: auto; }
    """

    def __init__(self, alphabet: int = 10, cell_width: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.grid: np.ndarray | None = None
        self.cell_width = cell_width
        self.set_alphabet(alphabet)

    def set_alphabet(self, alphabet: int) -> None:
        colours = [Color.parse(c) for c in palette(alphabet)]
        self._alphabet = alphabet
        # one Style per (top colour, bottom colour) pair, built once, indexed top * alphabet + bottom
        self._styles = [Style(color=t, bgcolor=b) for t in colours for b in colours]
        self._top_only = [Style(color=t) for t in colours]
        self._glyph = "▀" * self.cell_width

    def update_grid(self, grid: np.ndarray) -> None:
        resized = self.grid is None or self.grid.shape != grid.shape
        self.grid = grid
        self.refresh(layout=resized)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return 0 if self.grid is None else self.grid.shape[1] * self.cell_width

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return 0 if self.grid is None else (self.grid.shape[0] + 1) // 2

    def render_line(self, y: int) -> Strip:
        g = self.grid
        width = self.size.width
        if g is None or 2 * y >= g.shape[0]:
            return Strip.blank(width)
        if 2 * y + 1 < g.shape[0]:
            codes, styles = g[2 * y].astype(np.intp) * self._alphabet + g[2 * y + 1], self._styles
        else:
            codes, styles = g[2 * y].astype(np.intp), self._top_only
        # one segment per run of equal cells: every segment passes Textual's line filters each frame
        starts = np.flatnonzero(np.diff(codes, prepend=-1))
        runs = np.diff(starts, append=len(codes))
        glyph = self._glyph
        segments = [Segment(glyph * n, styles[c]) for c, n in zip(codes[starts].tolist(), runs.tolist())]
        return Strip(segments, len(codes) * self.cell_width).crop(0, width)
