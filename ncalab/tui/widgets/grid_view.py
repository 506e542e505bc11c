"""A live NCA grid drawn with half-block characters: two grid rows per terminal row."""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.widget import Widget

from ncalab.cli.render import palette


class GridView(Widget):
    """Shows one (H, W) grid; ``update_grid`` swaps it and repaints."""

    DEFAULT_CSS = """
    GridView { width: auto; height: auto; }
    """

    def __init__(self, alphabet: int = 10, cell_width: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.grid: np.ndarray | None = None
        self.cell_width = cell_width
        self.colours = palette(alphabet)

    def set_alphabet(self, alphabet: int) -> None:
        self.colours = palette(alphabet)

    def update_grid(self, grid: np.ndarray) -> None:
        self.grid = grid
        self.refresh(layout=True)

    def get_content_width(self, container, viewport) -> int:
        return 0 if self.grid is None else self.grid.shape[1] * self.cell_width

    def get_content_height(self, container, viewport, width) -> int:
        return 0 if self.grid is None else (self.grid.shape[0] + 1) // 2

    def render(self) -> Text:
        text = Text()
        if self.grid is None:
            return text
        g, cw, col = self.grid, self.cell_width, self.colours
        h, w = g.shape
        for y in range(0, h, 2):
            for x in range(w):
                top = col[int(g[y, x])]
                style = f"{top} on {col[int(g[y + 1, x])]}" if y + 1 < h else top
                text.append("▀" * cw, style=style)
            if y + 2 < h:
                text.append("\n")
        return text
