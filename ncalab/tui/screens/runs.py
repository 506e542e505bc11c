"""Runs: every experiment in the store, live; details, curves and job controls for one."""

from __future__ import annotations

from rich.markup import escape
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Static
from textual.worker import get_current_worker

from ncalab.config.keys import flatten
from ncalab.display.plots import curves_plot
from ncalab.display.probes import probe_rows, stored_models
from ncalab.display.summary import compute_lines
from ncalab.errors import NcalabError
from ncalab.services import runs as svc
from ncalab.services.jobs import cancel, follow_log
from ncalab.services.launch import resume
from ncalab.services.runs import list_rows, remove
from ncalab.tui.messages import Notice, StoreWritten
from ncalab.tui.reports import write_report_in_background
from ncalab.tui.screens.confirm import ConfirmScreen
from ncalab.tui.text import Pairs
from ncalab.tui.widgets.nav_bar import NavBar
from ncalab.tui.widgets.run_table import RunTable

# Id, status and results first: they are never cut, and what does not fit whole is left out.
COLUMNS = {"": 1, "id": 10, "status": 9, "nca": 6, "scratch": 7, "gain": 6, "speedup": 7, "preset": 16,
           "seed": 4, "started": 11, "took": 6}
SHORTENED = ("preset",)  # a family's long name may end in "…" (16 cells at most)
NO_STORE = "no experiments yet: press l to launch one, or `ncalab run --preset code --detach`"


def _f(v, spec=".2f"):
    return "-" if v is None else format(v, spec)


def _when(t) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(t).strftime("%m-%d %H:%M") if t else "-"


def _took(s) -> str:
    if s is None:
        return "-"
    m, sec = divmod(int(s), 60)
    return f"{m // 60}h{m % 60:02d}" if m >= 60 else f"{m}m{sec:02d}"


def _count(v) -> str:
    return f"{int(v):,}" if isinstance(v, (int, float)) else str(v)


def plot_text(curves: list[dict], width: int, height: int) -> Text:
    """Curves as text (NCA and scratch overlaid), labelled by run kind."""
    ansi = curves_plot([{**c, "label": c["label"].split("/")[-1]} for c in curves], width, height)
    return Text.from_ansi(ansi, no_wrap=True)


def details_text(d: dict) -> Pairs:
    """The selected experiment: results, compute, runs, settings and the log's last lines, as
    label-value pairs that the panel's width never splits."""
    s = d["summary"]
    p = Pairs().add(f"[b]{d['id']}[/b]", f"{d['preset']}/{d['scale']}", f"seed {d['seed']}", f"[b]{d['status']}[/b]")
    if s:
        p.add(f"ppl scratch {_f(s.get('ppl_scratch'), '.3f')}", f"ppl nca {_f(s.get('ppl_nca'), '.3f')}",
              f"gain {_f(s.get('gain'), '+.4f')}", f"speedup {_f(s.get('speedup'), '.3f')}")
        # a summary stored by an older version may lack the experiment's own fields
        full = {"experiment_id": d["id"], "preset": d["preset"], "scale": d["scale"], "seed": d["seed"], **s}
        lines = compute_lines(full)
        flops = [line for line in lines if line.startswith("FLOPs ")]
        for line in flops:
            p.add(*(escape(part) for part in line.split("  ")))
        p.add(*(escape(line) for line in lines if line not in flops))  # in-context figures, flowed
    for r in d["runs"]:
        p.add(f"{r['kind']} {r['status']} {r['tokens']:,}/{r['total_tokens']:,}")
    for row in probe_rows(stored_models(d["runs"])):  # skill probes, each with its chance level
        p.add(*(escape(item) for item in row))
    if d["tags"]:
        p.add("tags " + escape(", ".join(d["tags"])))
    c = flatten(d["config"])  # tolerate configs written by other versions
    settings = []
    if "model.n_layer" in c and "model.d_model" in c:
        settings.append(f"model {c['model.n_layer']}x{c['model.d_model']}")
    if "data.corpus" in c:
        settings.append(f"corpus {c['data.corpus']}")
    for stage in ("stage1", "stage2"):
        if f"{stage}.tokens" in c:
            on = f" {c['stage1.source']}" if stage == "stage1" and "stage1.source" in c else ""  # what stage 1 read
            settings.append(f"{stage}{on} {_count(c[f'{stage}.tokens'])} tokens lr {c.get(f'{stage}.lr', '-')}")
    if "transfer.reinit" in c:
        reinit = c["transfer.reinit"]
        settings.append(f"reinit {(','.join(reinit) if isinstance(reinit, list) else reinit) or 'none'}")
    p.add(*(Text(item, style="dim") for item in settings))
    for line in d.get("log_tail") or []:
        p.add(Text(line.rstrip(), style="dim"))
    return p


class RunsScreen(Screen):
    class RowsLoaded(Message):
        """The store's experiments as table rows, read in a worker (``error``: the store could not
        be read, and why)."""

        def __init__(self, rows: list[dict], error: str | None) -> None:
            super().__init__()
            self.rows, self.error = rows, error

    class DetailsLoaded(Message):
        """One experiment's details, curves and log tail, loaded in a worker for ``exp_id``
        (``details`` None: ``curves`` says why they could not be read)."""

        def __init__(self, exp_id: str, details: dict | None, curves: list[dict] | str) -> None:
            super().__init__()
            self.exp_id, self.details, self.curves = exp_id, details, curves

    AUTO_FOCUS = "#table"  # keys act on the table; / focuses the filter
    BINDINGS = [
        Binding("f5,ctrl+r", "refresh", "Refresh", id="runs.refresh", show=False),
        Binding("space", "mark", "Mark", id="runs.mark"),
        Binding("c", "cancel", "Cancel", id="runs.cancel"),
        Binding("u", "resume", "Resume", id="runs.resume"),
        Binding("t", "tag", "Tag", id="runs.tag"),
        Binding("x,delete", "delete", "Delete", id="runs.delete"),
        Binding("slash", "filter", "Filter", id="runs.filter"),
        Binding("p", "report", "Report", id="runs.report"),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.selected: str | None = None
        self._shown: list[tuple] | None = None
        self._rows: list[dict] = []
        self.marked: set[str] = set()
        self._selected_status: str | None = None

    def compose(self) -> ComposeResult:
        yield NavBar("runs")
        with Horizontal(id="runs"):
            with Vertical(id="runs-left"):
                yield Input(placeholder="filter: id, status, preset, tag  (/ to focus)", id="filter")
                yield RunTable(COLUMNS, SHORTENED, id="table")
                yield Input(placeholder="tag for the selected experiment, then enter (escape: none)", id="tag-input")
            with VerticalScroll(id="details"):
                yield Static("select an experiment", id="summary")
                yield Static("", id="curve")
        yield Footer()

    def on_mount(self) -> None:
        rows = getattr(self.app, "prefetched_runs", None)
        if rows is not None:  # read while Explore was open: show it now, refresh just after
            self.app.prefetched_runs = None
            self._show_rows(rows, None)
        self.action_refresh()
        self.set_interval(2.0, self.action_refresh)

    def _reader(self):
        """The app's shared read-only store (None: nothing has created a store yet)."""
        return self.app.stores.reader()

    @work(thread=True, exclusive=True, group="runs-refresh")
    def action_refresh(self) -> None:
        try:
            store = self._reader()
            rows = [] if store is None else list_rows(store)
            error = None
        except NcalabError as e:
            rows, error = [], str(e)
        self.post_message(self.RowsLoaded(rows, error))

    @on(RowsLoaded)
    def rows_loaded(self, message: RowsLoaded) -> None:
        self._show_rows(message.rows, message.error)

    def _show_rows(self, rows: list[dict] | None, error: str | None) -> None:
        table = self.query_one(RunTable)
        if error:
            self.query_one("#summary", Static).update(f"[red]cannot open the run store:[/] {error}")
            return
        if rows is None:
            rows = self._rows
        self._rows = rows
        needle = self.query_one("#filter", Input).value.strip().lower()
        if needle:
            rows = [r for r in rows if needle in " ".join([r["id"], r["status"], r["preset"], r["scale"], *r["tags"]]).lower()]
        keep = self.selected
        cells = [("●" if r["id"] in self.marked else "", r["id"], r["status"], _f(r["ppl_nca"]), _f(r["ppl_scratch"]),
                  "-" if r["gain"] is None else f"{r['gain']:+.3f}", "-" if r["speedup"] is None else f"{r['speedup']:.2f}x",
                  f"{r['preset']}/{r['scale']}", str(r["seed"]), _when(r["started_at"]), _took(r["duration_s"]))
                 for r in rows]
        sel = next((r for r in rows if r["id"] == self.selected), None)
        if sel is not None and (sel["status"] != self._selected_status  # a new status: its ending, say
                                or sel["status"] in ("running", "queued") and not self._loading_details()):
            self.load_details(self.selected)  # live: progress, curves and log of a job in flight
        self._selected_status = sel["status"] if sel else None
        if cells == self._shown:
            return  # nothing changed since the last refresh: keep the table (and the cursor) as is
        self._shown = cells
        ids = [c[1] for c in cells]
        table.set_rows(cells, ids.index(keep) if keep in ids else None)
        if not rows:
            self.query_one("#summary", Static).update(NO_STORE if not needle else "no experiment matches the filter")

    def _loading_details(self) -> bool:
        """Whether a details load is under way: a live reload leaves it be, as replacing it would
        cancel it (loads slower than the refresh would never show)."""
        return any(w.node is self and w.group == "runs-details" and w.is_running for w in self.workers)

    @on(RunTable.RowHighlighted)
    def row_highlighted(self, event: RunTable.RowHighlighted) -> None:
        if self._shown is None or not 0 <= event.cursor_row < len(self._shown):
            return
        exp_id = self._shown[event.cursor_row][1]
        if exp_id != self.selected:
            self.selected = exp_id
            self.load_details(exp_id)

    @work(thread=True, exclusive=True, group="runs-details")
    def load_details(self, exp_id: str) -> None:
        try:
            store = self._reader()
            if store is None:
                raise NcalabError(NO_STORE)
            d = svc.details(store, exp_id)
            ids = sorted(self.marked) if self.marked else [exp_id]
            try:
                curves = svc.curves(store, ids)
            except NcalabError:
                curves = []  # nothing evaluated yet
            d["log_tail"] = list(follow_log(store, exp_id, follow=False))[-6:]
        except NcalabError as e:
            d, curves = None, str(e)
        if not get_current_worker().is_cancelled:  # a newer load replaced this one: it shows instead
            self.post_message(self.DetailsLoaded(exp_id, d, curves))

    @on(DetailsLoaded)
    def details_loaded(self, message: DetailsLoaded) -> None:
        if message.exp_id != self.selected:
            return  # loaded for an experiment no longer selected: stale
        self._show_details(message.details, message.curves)

    def _show_details(self, d, curves) -> None:
        if d is None:
            self.query_one("#summary", Static).update(f"[dim]{curves}[/]")
            self.query_one("#curve", Static).update("")
            return
        self.query_one("#summary", Static).update(details_text(d))
        w = self.query_one("#details").size.width
        self.query_one("#curve", Static).update(plot_text(curves, w - 2, 16) if curves else "")

    def _control(self, what: str) -> None:
        if self.selected is None:
            return
        self.run_control(what, self.selected)

    @work(thread=True, group="runs-control")
    def run_control(self, what: str, exp_id: str) -> None:
        try:
            store = self.app.stores.writer()
            status = cancel(store, exp_id, 60) if what == "cancel" else resume(store, exp_id).status
            self.post_message(Notice(f"{exp_id}: {status}"))
        except NcalabError as e:
            self.post_message(Notice(str(e), severity="error"))
        self.post_message(StoreWritten(exp_id, what))

    def action_cancel(self) -> None:
        self._control("cancel")

    def action_report(self) -> None:
        """Write the selected experiment's HTML report into the current folder (never the store)."""
        if self.selected is not None:
            write_report_in_background(self, self.selected)

    def action_mark(self) -> None:
        """Mark or unmark the selected experiment; marked ones share the curve panel."""
        if self.selected is None:
            return
        self.marked ^= {self.selected}
        self._shown = None
        self._show_rows(None, None)
        self.load_details(self.selected)

    def action_filter(self) -> None:
        self.query_one("#filter", Input).focus()

    def action_tag(self) -> None:
        if self.selected is not None:
            field = self.query_one("#tag-input", Input)
            field.display = True
            field.focus()

    @on(Input.Blurred, "#tag-input")
    def tag_done(self, event: Input.Blurred) -> None:
        event.input.display = False  # shown only while a tag is typed

    @on(Input.Changed, "#filter")
    def filter_changed(self) -> None:
        self._shown = None
        self._show_rows(None, None)

    @on(Input.Submitted, "#tag-input")
    def tag_submitted(self, event: Input.Submitted) -> None:
        tag = event.value.strip()
        event.input.value = ""
        self.set_focus(self.query_one(RunTable))
        if tag and self.selected:
            self.tag_experiment(self.selected, tag)

    @work(thread=True, group="runs-control")
    def tag_experiment(self, exp_id: str, tag: str) -> None:
        try:
            self.app.stores.writer().tag(exp_id, tag)
        except NcalabError as e:
            self.post_message(Notice(str(e), severity="error"))
        self.post_message(StoreWritten(exp_id, "tag"))

    @on(StoreWritten)
    def store_written(self, message: StoreWritten) -> None:
        """The table again, after a write; a deleted experiment is no longer marked, and a tagged
        one's details are loaded again if it is still selected (else: the newer selection's load is
        under way, and a load of the tagged one would cancel it)."""
        if message.what == "delete":
            self.marked.discard(message.ident)
        self.action_refresh()
        if message.what == "tag" and message.ident == self.selected:
            self.load_details(message.ident)  # the tag shows in its details

    def action_delete(self) -> None:
        if self.selected is None:
            return
        exp_id = self.selected

        def answered(yes: bool | None) -> None:
            if yes:
                self.delete_experiment(exp_id)

        self.app.push_screen(ConfirmScreen(f"Delete experiment {exp_id}, its runs, metrics and files?"), answered)

    @work(thread=True, group="runs-control")
    def delete_experiment(self, exp_id: str) -> None:
        try:
            remove(self.app.stores.writer(), exp_id)
            self.post_message(Notice(f"deleted {exp_id}"))
        except NcalabError as e:
            self.post_message(Notice(str(e), severity="error"))
        self.post_message(StoreWritten(exp_id, "delete"))

    def action_resume(self) -> None:
        self._control("resume")
