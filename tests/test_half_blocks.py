"""The half-block lines of the live views: every cell drawn in its own colours, runs of equal
cells merged, and the same style and segment objects reused from frame to frame."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.color import Color
from textual.filter import ANSIToTruecolor, DimFilter, Monochrome

from ncalab.display.grids import palette
from ncalab.tui.widgets.half_blocks import HalfBlocks, truecolor_filters


def _cells(strip, cell_width):
    """(top colour, bottom colour or None) of every cell, read back from the segments."""
    out = []
    for seg in strip:
        assert set(seg.text) == {"▀"} and len(seg.text) % cell_width == 0
        bottom = seg.style.bgcolor.get_truecolor().hex if seg.style.bgcolor else None
        out += [(seg.style.color.get_truecolor().hex, bottom)] * (len(seg.text) // cell_width)
    return out


@settings(max_examples=60, deadline=None)
@given(colours=st.integers(2, 12), width=st.integers(1, 80), cell_width=st.integers(1, 2),
       seed=st.integers(0, 2**32 - 1), odd=st.booleans())
def test_every_cell_is_drawn_in_its_colours_with_one_segment_a_run(colours, width, cell_width, seed, odd):
    rng = np.random.default_rng(seed)
    # runs of equal cells, as calm rules make, mixed with noise
    top = np.repeat(rng.integers(0, colours, width), rng.integers(1, 4, width))[:width]
    bottom = None if odd else rng.integers(0, colours, width)
    blocks = HalfBlocks(colours, cell_width)
    strip = blocks.line(top, bottom)
    hexes = [Color.parse(c).get_truecolor().hex for c in palette(colours)]
    want = [(hexes[t], None if bottom is None else hexes[b]) for t, b in
            zip(top.tolist(), [None] * width if bottom is None else bottom.tolist())]
    assert _cells(strip, cell_width) == want
    assert strip.cell_length == width * cell_width
    pairs = list(zip(top.tolist(), [None] * width if bottom is None else bottom.tolist()))
    runs = 1 + sum(a != b for a, b in zip(pairs, pairs[1:]))
    assert len(list(strip)) == runs  # one segment per run of equal cells
    again = blocks.line(top, bottom)
    assert all(a is b for a, b in zip(strip, again))  # segments made once, reused
    other = HalfBlocks(colours, cell_width).line(top, bottom)
    assert all(a.style is b.style for a, b in zip(strip, other))  # styles shared by every view


def test_only_the_ansi_filter_is_dropped():
    app_filters = [ANSIToTruecolor(None), Monochrome(), DimFilter()]
    kept = truecolor_filters(app_filters)
    assert kept == app_filters[1:]
