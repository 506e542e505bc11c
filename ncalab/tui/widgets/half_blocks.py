"""Rows of colour indices drawn two to a terminal line: '▀' in the top cell's colour over the
bottom cell's (Explore's NCA grid, a source's space-time diagram).

A live view draws thousands of cells a frame, so a line is as few segments as it can be (one
per run of equal cells), every segment and style is made once and reused (Textual's caches
then find them by identity), and the widgets skip the app's ANSI-to-truecolor line filter:
their colours are truecolor already, and that filter looked up every segment every frame.
"""

from __future__ import annotations

from functools import lru_cache

from rich.color import Color
from rich.segment import Segment
from rich.style import Style
from textual.filter import ANSIToTruecolor, LineFilter
from textual.strip import Strip

from ncalab.display.grids import palette
from ncalab.lazy import np

_RUN = 1 << 24  # a segment's key: style index * _RUN + run length (a line is shorter than this)


@lru_cache(maxsize=16)
def _styles(colours: int) -> tuple[Style, ...]:
    """colours**2 styles of (top, bottom) pairs, indexed top * colours + bottom, then colours
    styles of a top cell alone: the same objects for every view of that many colours."""
    rgb = [Color.parse(c) for c in palette(colours)]
    return (*[Style(color=t, bgcolor=b) for t in rgb for b in rgb], *[Style(color=t) for t in rgb])


class HalfBlocks:
    """Draws lines of cells ``cell_width`` characters wide in ``colours`` colours."""

    def __init__(self, colours: int, cell_width: int = 1):
        self.colours, self.cell_width = colours, cell_width
        self._styles = _styles(colours)
        self._segments: dict[int, Segment] = {}  # (style index, run length) -> its segment

    def line(self, top: np.ndarray, bottom: np.ndarray | None = None) -> Strip:
        """One terminal line: ``top`` over ``bottom`` (None: the top cells alone, a last odd row)."""
        top = np.asarray(top, dtype=np.intp)
        n = len(top)
        if n == 0:
            return Strip.blank(0)
        if bottom is None:
            codes = top + self.colours * self.colours
        else:
            codes = top * self.colours + np.asarray(bottom, dtype=np.intp)[:n]
        change = np.empty(n, dtype=bool)
        change[0] = True
        np.not_equal(codes[1:], codes[:-1], out=change[1:])
        starts = np.flatnonzero(change)
        runs = np.diff(starts, append=n)
        keys, made = (codes[starts] * _RUN + runs).tolist(), self._segments
        try:
            segments = [made[k] for k in keys]
        except KeyError:  # a run not drawn before: make the missing segments once
            for k in keys:
                if k not in made:
                    code, run = divmod(k, _RUN)
                    made[k] = Segment("▀" * (run * self.cell_width), self._styles[code])
            segments = [made[k] for k in keys]
        return Strip(segments, n * self.cell_width)


def truecolor_filters(app_filters: list[LineFilter]) -> list[LineFilter]:
    """The app's line filters without the ANSI-to-truecolor one (colour-blind and dim filters stay)."""
    return [f for f in app_filters if not isinstance(f, ANSIToTruecolor)]
