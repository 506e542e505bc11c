"""A table of runs drawn line by line: only the visible rows are ever rendered.

Textual's DataTable measures every cell of every row it is given; with a thousand runs that,
and its first-use stylesheet parse, cost over half a second before Runs could be seen. Runs
needs a fixed set of fixed-width text columns, a row cursor and zebra stripes, so this draws
exactly that with the line API and keeps opening Runs independent of the store's size.
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

    def __init__(self, columns: dict[str, int], **kwargs):
        super().__init__(**kwargs)
        self.columns = columns
        self.rows: list[tuple[str, ...]] = []
        self.cursor_row = 0
        self._width = sum(columns.values()) + len(columns)  # one space between columns

    @property
    def row_count(self) -> int:
        return len(self.rows)

    def set_rows(self, rows: list[tuple[str, ...]], cursor_row: int | None = None) -> None:
        self.rows = rows
        self.virtual_size = Size(self._width, len(rows) + 1)
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

    def _line(self, cells, style: Style) -> Strip:
        text = " ".join(str(c)[:w].ljust(w) for c, w in zip(cells, self.columns.values()))
        return Strip([Segment(text.ljust(self._width), style)], self._width)

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        width = self.scrollable_content_region.width
        base = self.rich_style
        if y == 0:  # the header stays put while the rows scroll
            strip = self._line(self.columns.keys(), base + self.get_component_rich_style("run-table--header"))
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
            strip = self._line(self.rows[i], style)
        return strip.crop(int(scroll_x), int(scroll_x) + width).extend_cell_length(width, base)
