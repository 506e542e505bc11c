"""The ncalab Textual app: `ncalab` with no arguments."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import App
from textual.binding import Binding

from ncalab.tui.commands import NcalabCommands, load_keymap
from ncalab.tui.screens.explore import ExploreScreen
from ncalab.tui.screens.gallery import GalleryScreen
from ncalab.tui.screens.help import HelpScreen
from ncalab.tui.screens.launch import LaunchScreen
from ncalab.tui.screens.runs import RunsScreen


class NcalabApp(App):
    TITLE = "ncalab"
    SUB_TITLE = "NCA pre-pre-training lab"
    CSS_PATH = Path(__file__).with_name("ncalab.tcss")
    MODES = {"explore": ExploreScreen, "families": GalleryScreen, "launch": LaunchScreen, "runs": RunsScreen}  # screens read home and seed from the app
    COMMANDS = App.COMMANDS | {NcalabCommands}
    # every binding has an id, so ~/.config/ncalab/keys.toml can remap it ([keys] id = "key")
    BINDINGS = [
        Binding("e", "switch_mode('explore')", "Explore", id="go.explore"),
        Binding("f", "switch_mode('families')", "Families", id="go.families"),
        Binding("l", "switch_mode('launch')", "Launch", id="go.launch"),
        Binding("r", "switch_mode('runs')", "Runs", id="go.runs"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, home=None, seed: int = 0, autoplay: bool = True, draw_seed: int | None = None):
        super().__init__()
        self.home = home
        self.seed = seed
        self.draw_seed = draw_seed
        self.autoplay = autoplay  # tests and snapshots start paused, so frames are deterministic

    def on_mount(self) -> None:
        keymap, error = load_keymap()
        if keymap:
            self.set_keymap(keymap)
        if error:
            self.notify(error, severity="warning")
        self.switch_mode("explore")
        self.warm_imports()

    @work(thread=True, group="warm-imports")
    def warm_imports(self) -> None:
        """Load the store's libraries (sqlalchemy, pydantic) while the user looks at Explore."""
        import ncalab.jobs.queue  # noqa: F401
        import ncalab.services.runs  # noqa: F401
        import ncalab.store  # noqa: F401

    def action_help(self) -> None:
        self.push_screen(HelpScreen())


def run_app(home=None) -> None:
    NcalabApp(home=home).run()
