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
from ncalab.tui.screens.sweeps import SweepsScreen


class NcalabApp(App):
    TITLE = "ncalab"
    SUB_TITLE = "NCA pre-pre-training lab"
    CSS_PATH = Path(__file__).with_name("ncalab.tcss")
    MODES = {"explore": ExploreScreen, "families": GalleryScreen, "launch": LaunchScreen, "runs": RunsScreen,
             "sweeps": SweepsScreen}  # screens read home and seed from the app
    COMMANDS = App.COMMANDS | {NcalabCommands}
    # every binding has an id, so ~/.config/ncalab/keys.toml can remap it ([keys] id = "key")
    BINDINGS = [
        Binding("e", "switch_mode('explore')", "Explore", id="go.explore"),
        Binding("f", "switch_mode('families')", "Families", id="go.families"),
        Binding("l", "switch_mode('launch')", "Launch", id="go.launch"),
        Binding("r", "switch_mode('runs')", "Runs", id="go.runs"),
        Binding("w", "switch_mode('sweeps')", "Sweeps", id="go.sweeps"),
        Binding("question_mark", "help", "Help", id="help"),
        Binding("q", "quit", "Quit", id="quit"),
    ]

    def __init__(self, home=None, seed: int = 0, autoplay: bool = True, draw_seed: int | None = None):
        super().__init__()
        self.home = home
        self.seed = seed
        self.draw_seed = draw_seed
        self.prefetched_runs: list[dict] | None = None
        self.autoplay = autoplay  # tests and snapshots start paused, so frames are deterministic
        # Textual re-parses every stylesheet source whenever a new widget class first mounts, and
        # its parse cache (64 entries) is smaller than this app's ~80 sources, so each screen's
        # first open re-tokenised all of them (0.23 s for Runs). A larger cache makes it a lookup.
        cache = getattr(self.stylesheet, "_parse_cache", None)
        if hasattr(cache, "grow"):
            cache.grow(512)

    def switch_mode(self, mode: str):
        # A screen opened for the first time is styled as it mounts, yet Textual also refreshes
        # the whole app's CSS for it (twice, and dropping its parse cache): 0.25 s on Runs. Mark
        # new screens as current with the app's CSS so only the real theme changes refresh it.
        factory = self._modes.get(mode)
        if mode not in self._screen_stacks and isinstance(factory, type) and hasattr(self, "_css_update_count"):
            self._modes[mode] = lambda: _styled(factory, self._css_update_count)
        return super().switch_mode(mode)

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
        """Load the store's libraries and read the runs list while the user looks at Explore.

        The first query also compiles SQLAlchemy's statements (about 0.2 s); done here, Runs
        opens with its table already filled and refreshes it a moment later.
        """
        import ncalab.jobs.queue  # noqa: F401
        from ncalab.errors import NcalabError
        from ncalab.services.runs import list_rows
        from ncalab.store import RunStore

        try:
            self.prefetched_runs = list_rows(RunStore(self.home))
        except NcalabError:
            pass  # Runs explains a store it cannot open when it is opened

    def action_help(self) -> None:
        self.push_screen(HelpScreen())


def _styled(factory, count):
    screen = factory()
    screen._css_update_count = count
    return screen


def run_app(home=None) -> None:
    NcalabApp(home=home).run()
