"""Sweeps: every sweep in the store, and the selected one's table (the one `ncalab sweep show`
prints) with its gain against a swept key; live while members run."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static
from textual.worker import get_current_worker

from ncalab.display.plots import gain_plot
from ncalab.display.tables import SWEEP_LEGEND, sweep_table
from ncalab.errors import NcalabError
from ncalab.services import sweeps
from ncalab.tui.reports import write_report_in_background
from ncalab.tui.screens.groups import SHORTENED, GroupListScreen
from ncalab.tui.widgets.nav_bar import NavBar
from ncalab.tui.widgets.run_table import RunTable

COLUMNS = {"id": 10, "done": 5, "status": 6, "grid": 34, "name": 24}
NO_SWEEPS = "no sweeps yet: `ncalab sweep --grid KEY=V1,V2 --seeds 2 --detach`"


class SweepsScreen(GroupListScreen, Screen):
    REFRESH_GROUP = "sweeps-refresh"

    class SweepsLoaded(Message):
        """The store's sweeps and one sweep's table (``table``; None: none to show), loaded in a
        worker while ``selected`` was the selected sweep (None: none yet, the first one's table)."""

        def __init__(self, selected: str | None, rows: list[dict], table: dict | None, error: str | None) -> None:
            super().__init__()
            self.selected, self.rows, self.table, self.error = selected, rows, table, error

    AUTO_FOCUS = "#sweep-list"
    BINDINGS = [
        Binding("f5,ctrl+r", "refresh", "Refresh", id="sweeps.refresh", show=False),
        Binding("k", "next_key", "Next key", id="sweeps.next_key"),
        Binding("u", "resume", "Resume", id="sweeps.resume"),
        Binding("c", "cancel", "Cancel", id="sweeps.cancel"),
        Binding("p", "report", "Report", id="sweeps.report"),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sweeps: list[dict] = []
        self.selected: str | None = None
        self.key_index = 0
        self._shown: list[tuple] | None = None

    def compose(self) -> ComposeResult:
        yield NavBar("sweeps")
        with Vertical(id="sweeps"):
            yield RunTable(COLUMNS, SHORTENED, id="sweep-list")
            with VerticalScroll(id="sweep-detail"):
                yield Static(NO_SWEEPS, id="sweep-table")
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()
        self.set_interval(3.0, self._refresh_live)

    @work(thread=True, exclusive=True, group="sweeps-refresh")
    def action_refresh(self) -> None:
        selected = self.selected
        try:
            store = self.app.stores.reader()  # shared and read-only; None: no store yet
            rows = [] if store is None else sweeps.list_sweeps(store)
            sel = selected or (rows[0]["sweep_id"] if rows else None)
            tab = sweeps.table(store, sel) if sel else None
            error = None
        except NcalabError as e:
            rows, tab, error = [], None, str(e)
        if not get_current_worker().is_cancelled:  # a newer load replaced this one: it shows instead
            self.post_message(self.SweepsLoaded(selected, rows, tab, error))

    @on(SweepsLoaded)
    def sweeps_loaded(self, message: SweepsLoaded) -> None:
        if message.selected != self.selected:
            return  # loaded for a sweep no longer selected: stale (the newer selection's load follows)
        self._show(message.rows, message.table, message.error)

    def _show(self, rows: list[dict], tab: dict | None, error: str | None) -> None:
        detail = self.query_one("#sweep-table", Static)
        if error:
            detail.update(f"[red]cannot open the run store:[/] {error}")
            return
        self.sweeps = rows
        self._list(rows)
        if tab is not None:
            self._show_table(tab)
        elif not rows:
            detail.update(NO_SWEEPS)

    def _show_table(self, tab: dict) -> None:
        keys = list(tab["grid"])
        key = keys[self.key_index % len(keys)]
        width = self.query_one("#sweep-detail").size.width
        ansi = gain_plot(tab, key, width - 2, 14)
        plot = None if ansi is None else Text.from_ansi(ansi, no_wrap=True)
        parts = [sweep_table(tab), Text(SWEEP_LEGEND, style="dim")]
        if plot is not None:
            parts += [Text(f"\ngain against {key}" + ("  (k: next key)" if len(keys) > 1 else ""), style="bold"), plot]
        self.query_one("#sweep-table", Static).update(Group(*parts))

    @on(RunTable.RowHighlighted)
    def row_highlighted(self, event: RunTable.RowHighlighted) -> None:
        if self._shown and 0 <= event.cursor_row < len(self._shown):
            sweep_id = self._shown[event.cursor_row][0]
            if sweep_id != self.selected:
                self.selected = sweep_id
                self.key_index = 0
                self.action_refresh()

    def action_next_key(self) -> None:
        self.key_index += 1
        self.action_refresh()

    def action_report(self) -> None:
        """Write the selected sweep's HTML report into the current folder (never the store)."""
        shown = self.selected or (self.sweeps[0]["sweep_id"] if self.sweeps else None)  # the table on screen
        if shown is not None:
            write_report_in_background(self, shown)
