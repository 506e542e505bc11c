"""The ncalab Textual app: `ncalab` with no arguments."""

from __future__ import annotations

from pathlib import Path

from textual import on, work
from textual.app import App
from textual.binding import Binding
from textual.message import Message

from ncalab.errors import NcalabError
from ncalab.tui.commands import NcalabCommands, first_launch, load_keymap, mark_welcomed
from ncalab.tui.messages import Notice
from ncalab.tui.screens.explore import ExploreScreen
from ncalab.tui.stores import REAP_EVERY_S, AppStores

WIDE = 120  # from this width, tables and their details sit side by side


def _later(module: str, name: str):
    """A screen imported when its view first opens: the lab's first frame (Explore) does not wait
    for the other screens' modules and what they import (the config, plugins, markdown)."""

    def make():
        import importlib

        return getattr(importlib.import_module(f"ncalab.tui.screens.{module}"), name)()

    return make


class NcalabApp(App):
    class RunsPrefetched(Message):
        """The runs list, read while the user looks at Explore (Runs shows it when it opens)."""

        def __init__(self, rows: list[dict]) -> None:
            super().__init__()
            self.rows = rows

    TITLE = "ncalab"
    SUB_TITLE = "NCA pre-pre-training lab"
    CSS_PATH = Path(__file__).with_name("ncalab.tcss")
    MODES = {"explore": ExploreScreen, "families": _later("gallery", "GalleryScreen"),
             "launch": _later("launch", "LaunchScreen"), "runs": _later("runs", "RunsScreen"),
             "sweeps": _later("sweeps", "SweepsScreen"),
             "studies": _later("studies", "StudiesScreen")}  # screens read home and seed from the app
    COMMANDS = App.COMMANDS | {NcalabCommands}
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (WIDE, "-wide")]  # screens get the class for their width
    # Every binding has an id, so ~/.config/ncalab/keys.toml can remap it ([keys] id = "key").
    # They show in the top line of each screen (NavBar), leaving the footer to the screen's keys.
    BINDINGS = [
        Binding("e", "switch_mode('explore')", "Explore", id="go.explore", show=False),
        Binding("f", "switch_mode('families')", "Families", id="go.families", show=False),
        Binding("l", "switch_mode('launch')", "Launch", id="go.launch", show=False),
        Binding("r", "switch_mode('runs')", "Runs", id="go.runs", show=False),
        Binding("w", "switch_mode('sweeps')", "Sweeps", id="go.sweeps", show=False),
        Binding("i", "switch_mode('studies')", "Studies", id="go.studies", show=False),  # s steps Explore
        Binding("question_mark", "help", "Help", id="help", show=False),
        Binding("q", "quit", "Quit", id="quit", show=False),
    ]

    def __init__(self, home=None, seed: int | None = None, autoplay: bool = True, draw_seed: int | None = None,
                 welcome: bool = False):
        """``seed``: the random stream Explore draws rules from (None: a fresh one each launch);
        ``welcome``: show the getting-started screen if this user has never seen it."""
        super().__init__()
        self.home = home
        self.seed = seed
        self.draw_seed = draw_seed
        self.welcome = welcome
        self.stores = AppStores(home)  # one reader and one writer for every screen, closed on exit
        self.prefetched_runs: list[dict] | None = None
        self.autoplay = autoplay  # tests and snapshots start paused, so frames are deterministic

    def on_mount(self) -> None:
        keymap, error = load_keymap()
        if keymap:
            self.set_keymap(keymap)
        if error:
            self.notify(error, severity="warning")
        self.switch_mode("explore")
        if self.welcome and first_launch():
            self.action_getting_started()
            mark_welcomed()
        self.call_after_refresh(self.warm_imports)  # after the first frame: its imports would delay it
        self.set_interval(REAP_EVERY_S, self.reap_jobs)

    def on_unmount(self) -> None:
        self.stores.close()

    @work(thread=True, group="warm-imports")
    def warm_imports(self) -> None:
        """Load the store's libraries and read the runs list while the user looks at Explore.

        The first query also compiles SQLAlchemy's statements (about 0.2 s); done here, Runs
        opens with its table already filled and refreshes it a moment later.
        """
        from ncalab.services.live import load_job_queue  # late: in this worker, after the first frame
        from ncalab.services.runs import list_rows  # late: in this worker, after the first frame

        load_job_queue()
        try:
            self.stores.reap()
            store = self.stores.reader()
            if store is not None:
                self.post_message(self.RunsPrefetched(list_rows(store)))
        except NcalabError:
            pass  # Runs explains a store it cannot open when it is opened

    @on(RunsPrefetched)
    def runs_prefetched(self, message: RunsPrefetched) -> None:
        self.prefetched_runs = message.rows

    @on(Notice)
    def notice(self, message: Notice) -> None:
        """A worker's line for the user, from whichever screen (it bubbles up here)."""
        self.notify(message.text, severity=message.severity, timeout=message.timeout)

    @work(thread=True, exclusive=True, group="reap")
    def reap_jobs(self) -> None:
        """Mark jobs whose process is gone as lost: a write, so on a timer, never per refresh."""
        try:
            self.stores.reap()
        except NcalabError:
            pass  # no usable store: the screens say why

    def action_help(self) -> None:
        self.push_screen(_later("help", "HelpScreen")())

    def action_getting_started(self) -> None:
        self.push_screen(_later("help", "GettingStartedScreen")())


def run_app(home=None) -> None:
    NcalabApp(home=home, welcome=True).run()
