"""A live NCA grid drawn with half-block characters: two grid rows per terminal row.

Drawn line by line (Textual's line API) through widgets.half_blocks: a 64x64 grid is 2,048
glyphs a frame, too many to push through rich Text markup at interactive rates.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.geometry import Size
from textual.strip import Strip
from textual.widget import Widget

from ncalab.tui.widgets.half_blocks import HalfBlocks, truecolor_filters

if TYPE_CHECKING:  # numpy is imported where it is used: the TUI's first frame draws without it
    import numpy as np


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
        if getattr(self, "_blocks", None) is None or self._blocks.colours != alphabet:
            self._blocks = HalfBlocks(alphabet, self.cell_width)

    def update_grid(self, grid: np.ndarray) -> None:
        resized = self.grid is None or self.grid.shape != grid.shape
        self.grid = grid
        self.refresh(layout=resized)

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return 0 if self.grid is None else self.grid.shape[1] * self.cell_width

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        return 0 if self.grid is None else (self.grid.shape[0] + 1) // 2

    def get_line_filters(self):
        return truecolor_filters(self.app.get_line_filters())

    def render_line(self, y: int) -> Strip:
        g = self.grid
        width = self.size.width
        if g is None or 2 * y >= g.shape[0]:
            return Strip.blank(width)
        bottom = g[2 * y + 1] if 2 * y + 1 < g.shape[0] else None
        return self._blocks.line(g[2 * y], bottom).crop(0, width)
