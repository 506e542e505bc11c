"""Runs: every experiment in the store, live; details, curves and job controls for one."""

from __future__ import annotations

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.screen import Screen
from textual.widgets import DataTable, Footer, Header, Static

from ncalab.errors import NcalabError

# Fixed widths: the table need not measure every cell of a thousand rows.
COLUMNS = {"id": 10, "status": 9, "preset": 11, "seed": 4, "nca": 7, "scratch": 7, "gain": 6, "speedup": 7}


def _f(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def plot_text(curves: list[dict], width: int, height: int) -> Text:
    """Curves as text with plotext (NCA and scratch overlaid)."""
    import plotext as plt

    plt.clf()
    plt.theme("clear")
    for c in curves:
        plt.plot(c["x"], c["y"], label=c["label"].split("/")[-1], marker="braille")
    plt.yscale("log")
    plt.xlabel("tokens")
    plt.plotsize(max(width, 30), max(height, 8))
    text = Text.from_ansi(plt.build())
    text.no_wrap = True
    return text


class RunsScreen(Screen):
    BINDINGS = [
        Binding("f5,ctrl+r", "refresh", "Refresh", id="runs.refresh"),
        Binding("c", "cancel", "Cancel run", id="runs.cancel"),
        Binding("u", "resume", "Resume run", id="runs.resume"),
    ]

    def __init__(self, home=None, **kwargs):
        super().__init__(**kwargs)
        self.home = home
        self.selected: str | None = None
        self._shown: list[tuple] | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="runs"):
            yield DataTable(id="table", cursor_type="row", zebra_stripes=True)
            with VerticalScroll(id="details"):
                yield Static("select an experiment", id="summary")
                yield Static("", id="curve")
        yield Footer()

    def on_mount(self) -> None:
        if self.home is None:
            self.home = getattr(self.app, "home", None)
        table = self.query_one(DataTable)
        for c, w in COLUMNS.items():
            table.add_column(c, key=c, width=w)
        self.action_refresh()
        self.set_interval(2.0, self.action_refresh)

    def _store(self):
        from ncalab.jobs.queue import reap
        from ncalab.store import RunStore

        store = RunStore(self.home)
        reap(store)
        return store

    @work(thread=True, exclusive=True, group="runs-refresh")
    def action_refresh(self) -> None:
        from ncalab.services.runs import list_rows

        try:
            rows = list_rows(self._store())
            error = None
        except NcalabError as e:
            rows, error = [], str(e)
        self.app.call_from_thread(self._show_rows, rows, error)

    def _show_rows(self, rows: list[dict], error: str | None) -> None:
        table = self.query_one(DataTable)
        if error:
            self.query_one("#summary", Static).update(f"[red]cannot open the run store:[/] {error}")
            return
        keep = self.selected
        cells = [(r["id"], r["status"], f"{r['preset']}/{r['scale']}", str(r["seed"]), _f(r["ppl_nca"]),
                  _f(r["ppl_scratch"]), "-" if r["gain"] is None else f"{r['gain']:+.3f}",
                  "-" if r["speedup"] is None else f"{r['speedup']:.2f}x") for r in rows]
        if cells == self._shown:
            return  # nothing changed since the last refresh: keep the table (and the cursor) as is
        self._shown = cells
        table.clear()
        table.add_rows(cells)
        ids = [c[0] for c in cells]
        if keep in ids:
            table.move_cursor(row=ids.index(keep))
        if not rows:
            self.query_one("#summary", Static).update("no experiments yet: `ncalab run --preset code --detach`")

    @on(DataTable.RowHighlighted)
    def row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if self._shown is None or not 0 <= event.cursor_row < len(self._shown):
            return
        exp_id = self._shown[event.cursor_row][0]
        if exp_id != self.selected:
            self.selected = exp_id
            self.load_details(exp_id)

    @work(thread=True, exclusive=True, group="runs-details")
    def load_details(self, exp_id: str) -> None:
        from ncalab.services import runs as svc

        store = self._store()
        try:
            d = svc.details(store, exp_id)
            curves = svc.curves(store, [exp_id]) if d["summary"] or d["status"] == "running" else []
        except NcalabError as e:
            d, curves = None, str(e)
        self.app.call_from_thread(self._show_details, d, curves)

    def _show_details(self, d, curves) -> None:
        if d is None:
            self.query_one("#summary", Static).update(f"[dim]{curves}[/]")
            self.query_one("#curve", Static).update("")
            return
        s = d["summary"]
        lines = [f"[b]{d['id']}[/b]  {d['preset']}/{d['scale']}  seed {d['seed']}  {d['status']}"]
        if s:
            lines.append(f"ppl scratch {_f(s.get('ppl_scratch'), '.3f')}   ppl nca {_f(s.get('ppl_nca'), '.3f')}")
            lines.append(f"gain {_f(s.get('gain'), '+.4f')}   speedup {_f(s.get('speedup'), '.3f')}")
        for r in d["runs"]:
            lines.append(f"  {r['kind']:<8} {r['status']:<10} {r['tokens']:>11,}/{r['total_tokens']:,}")
        self.query_one("#summary", Static).update("\n".join(lines))
        w = self.query_one("#details").size.width
        self.query_one("#curve", Static).update(plot_text(curves, w - 2, 16) if curves else "")

    def _control(self, what: str) -> None:
        if self.selected is None:
            return
        self.run_control(what, self.selected)

    @work(thread=True, group="runs-control")
    def run_control(self, what: str, exp_id: str) -> None:
        from ncalab.jobs import control

        try:
            status = control.cancel(self._store(), exp_id, 60) if what == "cancel" else control.resume(self._store(), exp_id)
            self.app.call_from_thread(self.notify, f"{exp_id}: {status}")
        except NcalabError as e:
            self.app.call_from_thread(self.notify, str(e), severity="error")
        self.action_refresh()

    def action_cancel(self) -> None:
        self._control("cancel")

    def action_resume(self) -> None:
        self._control("resume")
