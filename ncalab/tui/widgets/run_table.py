"""A table of runs drawn line by line: only the visible rows are ever rendered.

Textual's DataTable measures every cell of every row it is given; with a thousand runs that,
and its first-use stylesheet parse, cost over half a second before Runs could be seen. Runs
needs a fixed set of text columns, a row cursor and zebra stripes, so this draws exactly that
with the line API and keeps opening Runs independent of the store's size.

A narrow terminal never cuts an id, a status or a number: a column is as wide as its longest
cell, and the columns that do not fit whole are left out from the right (the first columns
are the ones that matter). Only columns named as shortened (names, labels) may end in "…".
"""

from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from textual.binding import Binding
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip


class RunTable(ScrollView, can_focus=True):
    """Rows of strings under fixed-width columns, one header line, one row cursor."""

    DEFAULT_CSS = """
    RunTable { background: $surface; }
    RunTable > .run-table--header { text-style: bold; background: $panel; }
    RunTable > .run-table--cursor { background: $accent 50%; text-style: bold; }
    RunTable:blur > .run-table--cursor { background: $accent 25%; text-style: none; }
    RunTable > .run-table--even { background: $surface-lighten-1 20%; }
    """
    COMPONENT_CLASSES = {"run-table--header", "run-table--cursor", "run-table--even"}
    BINDINGS = [
        Binding("up", "move(-1)", show=False),
        Binding("down", "move(1)", show=False),
        Binding("pageup", "page(-1)", show=False),
        Binding("pagedown", "page(1)", show=False),
        Binding("home", "jump(0)", show=False),
        Binding("end", "jump(-1)", show=False),
    ]

    class RowHighlighted(Message):
        """The cursor moved to ``cursor_row``."""

        def __init__(self, table: RunTable, cursor_row: int) -> None:
            super().__init__()
            self.table = table
            self.cursor_row = cursor_row

        @property
        def control(self) -> RunTable:
            return self.table

    def __init__(self, columns: dict[str, int], shortened: tuple[str, ...] = (), **kwargs):
        """``columns``: title -> least width, or for the ``shortened`` columns the most: their
        cells may be cut (with "…") rather than widen the column past it."""
        super().__init__(**kwargs)
        self.columns = columns
        self.shortened = set(shortened)
        self.rows: list[tuple[str, ...]] = []
        self.cursor_row = 0
        self.widths = list(columns.values())

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def set_rows(self, rows: list[tuple[str, ...]], cursor_row: int | None = None) -> None:
        self.rows = rows
        natural = [max([len(title), *(len(str(r[i])) for r in rows)]) for i, title in enumerate(self.columns)]
        self.widths = [min(n, w) if title in self.shortened else max(n, w)
                       for n, (title, w) in zip(natural, self.columns.items())]
        self.virtual_size = Size(0, len(rows) + 1)  # never scrolls sideways: columns are left out instead
        self.move_cursor(self.cursor_row if cursor_row is None else cursor_row, announce=True, force=True)
        self.refresh()

    def move_cursor(self, row: int, announce: bool = True, force: bool = False) -> None:
        row = max(0, min(row, len(self.rows) - 1))
        changed = row != self.cursor_row
        self.cursor_row = row
        self._keep_cursor_visible()
        self.refresh()
        if self.rows and announce and (changed or force):
            self.post_message(self.RowHighlighted(self, row))

    def _keep_cursor_visible(self) -> None:
        visible = max(1, self.scrollable_content_region.height - 1)  # less the header
        top = int(self.scroll_offset.y)
        if self.cursor_row < top:
            self.scroll_to(y=self.cursor_row, animate=False)
        elif self.cursor_row >= top + visible:
            self.scroll_to(y=self.cursor_row - visible + 1, animate=False)

    def action_move(self, step: int) -> None:
        self.move_cursor(self.cursor_row + step)

    def action_page(self, direction: int) -> None:
        self.move_cursor(self.cursor_row + direction * max(1, self.scrollable_content_region.height - 2))

    def action_jump(self, row: int) -> None:
        self.move_cursor(row if row >= 0 else len(self.rows) - 1)

    def on_click(self, event) -> None:
        y = event.y + int(self.scroll_offset.y) - 1  # the header is the first line
        if 0 <= y < len(self.rows) and event.y >= 1:
            self.move_cursor(y)

    def shown_columns(self, width: int) -> list[int]:
        """The widths of the columns drawn in ``width`` cells: those that fit whole, from the
        left; a shortened column also takes what is left if that is at least 8 cells."""
        out, used = [], -1
        for title, w in zip(self.columns, self.widths):
            room = width - used - 1
            if w <= room:
                out.append(w)
            elif title in self.shortened and room >= 8:
                out.append(room)
            else:
                break
            used += out[-1] + 1
        return out

    def visible_titles(self) -> list[str]:
        return list(self.columns)[: len(self.shown_columns(self.scrollable_content_region.width))]

    def _line(self, cells, style: Style, widths: list[int], width: int) -> Strip:
        text = " ".join(_fit(str(c), w) for c, w in zip(cells, widths))
        return Strip([Segment(text.ljust(width)[:width], style)], width)

    def render_line(self, y: int) -> Strip:
        scroll_y = self.scroll_offset.y
        width = self.scrollable_content_region.width
        base = self.rich_style
        widths = self.shown_columns(width)
        if y == 0:  # the header stays put while the rows scroll
            return self._line(self.columns.keys(), base + self.get_component_rich_style("run-table--header"), widths, width)
        else:
            i = y - 1 + int(scroll_y)
            if i >= len(self.rows):
                return Strip.blank(width, base)
            if i == self.cursor_row:
                style = base + self.get_component_rich_style("run-table--cursor")
            elif i % 2:
                style = base + self.get_component_rich_style("run-table--even")
            else:
                style = base
            return self._line(self.rows[i], style, widths, width)


def _fit(text: str, width: int) -> str:
    return text.ljust(width) if len(text) <= width else text[: width - 1] + "…"
