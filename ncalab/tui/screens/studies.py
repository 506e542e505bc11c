"""Studies: every scaling study in the store, and the selected one's grid (as `ncalab study
show` prints it), its loss against D per size, and its answers; live while members run.

The answers come from a bootstrap fit that takes seconds, so they are fitted in their own
worker, and again only when the study's stored points change (not on every refresh).
"""

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

from ncalab.display.plots import study_plot
from ncalab.display.study import grid_table, study_renderables
from ncalab.errors import NcalabError
from ncalab.services import study
from ncalab.tui.screens.groups import SHORTENED, GroupListScreen
from ncalab.tui.widgets.nav_bar import NavBar
from ncalab.tui.widgets.run_table import RunTable

# the grid label is longer than a sweep's ("3 sizes x 3 budgets x 4 arms x 2 seeds"): the name gives way
COLUMNS = {"id": 10, "done": 5, "status": 6, "grid": 40, "name": 24}
NO_STUDIES = ("no studies yet: `ncalab study --size model.d_model=64,128,192 --size model.n_head=2,4,6 "
              "--budgets 0.5M,1M,2M --sources nca,dyck --detach`")
QUICK, FULL = 200, 1000  # bootstrap resamples: the screen's quick fit, and the CLI's (m)


def arms_with_points(grid: dict) -> list[str]:
    return [a for a in grid["arms"] if any(c["arm"] == a and c["losses"] for c in grid["cells"])]


def points_key(grid: dict) -> tuple:
    """What the answers depend on: every stored loss of the grid (a new one means a refit)."""
    return tuple((c["arm"], c["n"], c["d"], tuple(c["losses"])) for c in grid["cells"] if c["losses"])


class StudiesScreen(GroupListScreen, Screen):
    REFRESH_GROUP = "studies-refresh"

    class StudiesLoaded(Message):
        """The store's studies and one study's grid (``grid``; None: none to show), loaded in a
        worker while ``selected`` was the selected study (None: none yet, the first one's)."""

        def __init__(self, selected: str | None, rows: list[dict], grid: dict | None, error: str | None) -> None:
            super().__init__()
            self.selected, self.rows, self.grid, self.error = selected, rows, grid, error

    class StudyFitted(Message):
        """A study's answers (or the one line why there are none) for the points in ``key``."""

        def __init__(self, study_id: str, key: tuple, resamples: int, answers, reason: str | None) -> None:
            super().__init__()
            self.study_id, self.key, self.resamples = study_id, key, resamples
            self.answers, self.reason = answers, reason

    AUTO_FOCUS = "#study-list"
    BINDINGS = [
        Binding("f5,ctrl+r", "refresh", "Refresh", id="studies.refresh", show=False),
        Binding("a", "next_arm", "Next arm", id="studies.next_arm"),
        Binding("m", "full_fit", f"{FULL} resamples", id="studies.resamples"),
        Binding("u", "resume", "Resume", id="studies.resume"),
        Binding("c", "cancel", "Cancel", id="studies.cancel"),
    ]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.studies: list[dict] = []
        self.selected: str | None = None
        self.grid: dict | None = None  # the grid on screen
        self.arm: str | None = None  # the plotted arm (None: the first with a point)
        self.resamples = QUICK
        self.fitted: dict[str, StudiesScreen.StudyFitted] = {}  # study id -> its latest answers
        self.fitting: tuple | None = None  # (study id, key, resamples) of the fit under way
        self._shown: list[tuple] | None = None

    def compose(self) -> ComposeResult:
        yield NavBar("studies")
        with Vertical(id="studies"):
            yield RunTable(COLUMNS, SHORTENED, id="study-list")
            with VerticalScroll(id="study-detail"):
                yield Static(NO_STUDIES, id="study-view")
        yield Footer()

    def on_mount(self) -> None:
        self.action_refresh()
        self.set_interval(3.0, self._refresh_live)

    @work(thread=True, exclusive=True, group="studies-refresh")
    def action_refresh(self) -> None:
        selected = self.selected
        try:
            store = self.app.stores.reader()  # shared and read-only; None: no store yet
            rows = [] if store is None else study.list_studies(store)
            sel = selected or (rows[0]["sweep_id"] if rows else None)
            grid = study.grid(store, sel, reap_first=False) if sel else None  # the app reaps on its timer
            error = None
        except NcalabError as e:
            rows, grid, error = [], None, str(e)
        if not get_current_worker().is_cancelled:  # a newer load replaced this one: it shows instead
            self.post_message(self.StudiesLoaded(selected, rows, grid, error))

    @on(StudiesLoaded)
    def studies_loaded(self, message: StudiesLoaded) -> None:
        if message.selected != self.selected:
            return  # loaded for a study no longer selected: stale (the newer selection's load follows)
        if message.error:
            self.query_one("#study-view", Static).update(f"[red]cannot open the run store:[/] {message.error}")
            return
        self._list(message.rows)
        self.grid = message.grid
        if self.grid is None:
            self.query_one("#study-view", Static).update(NO_STUDIES)
            return
        self._fit_if_changed()
        self._show()

    def _list(self, rows: list[dict]) -> None:
        self.studies = rows
        super()._list(rows)

    def _fit_if_changed(self) -> None:
        """Fit the grid's study when its points (or the resamples asked for) differ from those
        of the answers shown and of the fit under way."""
        study_id, key = self.grid["study_id"], points_key(self.grid)
        done = self.fitted.get(study_id)
        if (study_id, key, self.resamples) == self.fitting:
            return
        if done is not None and (done.key, done.resamples) == (key, self.resamples):
            return
        self.fitting = (study_id, key, self.resamples)
        self._fit(study_id, key, self.resamples)

    @work(thread=True, exclusive=True, group="studies-fit")
    def _fit(self, study_id: str, key: tuple, resamples: int) -> None:
        answers, reason = None, None
        try:
            answers = study.fit(self.app.stores.reader(), [study_id], resamples=resamples)
        except NcalabError as e:  # no points yet, or nothing to compare: one line says which
            reason = str(e)
        if not get_current_worker().is_cancelled:  # a newer fit replaced this one
            self.post_message(self.StudyFitted(study_id, key, resamples, answers, reason))

    @on(StudyFitted)
    def study_fitted(self, message: StudyFitted) -> None:
        self.fitted[message.study_id] = message
        if self.fitting == (message.study_id, message.key, message.resamples):
            self.fitting = None
        if self.grid is not None and self.grid["study_id"] == message.study_id:
            self._show()

    def _show(self) -> None:
        grid = self.grid
        with_points = arms_with_points(grid)
        arm = self.arm if self.arm in with_points else (with_points[0] if with_points else None)
        parts = [grid_table(grid)]
        width = self.query_one("#study-detail").size.width
        ansi = None if arm is None else study_plot(grid, width - 2, 14, arm)
        if ansi is None:
            parts.append(Text("\nno points stored yet: each appears when its run reaches that budget", style="dim"))
        else:
            more = "  (a: next arm)" if len(with_points) > 1 else ""
            parts += [Text(f"\n{arm}: held-out loss against stage-2 tokens D, one line per size N{more}", style="bold"),
                      Text.from_ansi(ansi, no_wrap=True)]
        parts += self._answers(grid["study_id"])
        self.query_one("#study-view", Static).update(Group(*parts))

    def _answers(self, study_id: str) -> list:
        """The answers' renderables under a title that says how many resamples gave them."""
        done = self.fitted.get(study_id)
        if done is None:
            return [Text("\nfitting the answers...", style="dim")]
        stale = ""
        if self.fitting and self.fitting[0] == study_id:  # these answers stay up until the new ones come
            _, key, resamples = self.fitting
            stale = " (new points stored: refitting)" if key != done.key else f" (refitting with {resamples})"
        full = "" if done.resamples >= FULL else f"; m: {FULL}, as `ncalab study fit`"
        title = Text(f"\nanswers, with bootstrap intervals from {done.resamples} resamples{full}{stale}", style="bold")
        if done.answers is None:
            return [title, Text(f"no answers yet: {done.reason}")]
        return [title, *study_renderables(done.answers)]

    @on(RunTable.RowHighlighted)
    def row_highlighted(self, event: RunTable.RowHighlighted) -> None:
        if self._shown and 0 <= event.cursor_row < len(self._shown):
            study_id = self._shown[event.cursor_row][0]
            if study_id != self.selected:
                self.selected = study_id
                self.arm = None
                self.action_refresh()

    def action_next_arm(self) -> None:
        if self.grid is None:
            return
        arms = arms_with_points(self.grid)
        if arms:
            now = arms.index(self.arm) if self.arm in arms else 0
            self.arm = arms[(now + 1) % len(arms)]
            self._show()

    def action_full_fit(self) -> None:
        """Refit with as many resamples as the CLI (a few seconds); later refits keep that many."""
        self.resamples = FULL
        if self.grid is not None:
            self._fit_if_changed()
            self._show()

    def _control_target(self) -> str | None:
        return self.selected or (self.studies[0]["sweep_id"] if self.studies else None)  # the one on screen
