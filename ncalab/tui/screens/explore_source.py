"""Explore's source mode: a stage-1 source other than NCA running live in place of the rule.

The source field (SourcePicker) picks it; widgets.source_view reads its sequences in a worker and
scrolls them (ECA as its space-time diagram, the Dyck languages and ww as depth profiles); this
mode (SourceMode) titles the sequence on screen and gives the statistics its sample defines. `n`
then shows the next sequence. explore.py keeps the NCA rule view and hands this mode the source
field's changes and the SourceView's messages.
"""

from __future__ import annotations

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Label, Select

from ncalab.display.source_views import stat_text
from ncalab.services.sources import choices
from ncalab.tui.text import Pairs
from ncalab.tui.widgets.source_view import SourceView

KINDS = {"grid": "space-time diagram", "profile": "depth over position", "tokens": "tokens"}  # what a view draws


class SourcePicker(Horizontal):
    """The source field: NCA alone until `list_sources` has listed the registered sources in a
    worker (it imports each one's entry point), then every one of them."""

    class Listed(Message):
        """The registered sources' (name, label) pairs."""

        def __init__(self, names: list[tuple[str, str]]) -> None:
            super().__init__()
            self.names = names

    def __init__(self, **kwargs):
        super().__init__(classes="field", **kwargs)
        self.names: list[str] = []  # the registered sources, once listed

    def compose(self) -> ComposeResult:
        yield Label("source")
        yield Select([("nca  NCA", "nca")], value="nca", allow_blank=False, compact=True, id="source")

    @work(thread=True, exclusive=True, group="explore-sources")
    def list_sources(self) -> None:
        listed, _ = choices()  # a broken plugin is left out (Launch says so)
        self.post_message(self.Listed([(c.name, c.label) for c in listed]))

    @on(Listed)
    def listed(self, message: Listed) -> None:
        self.names = [n for n, _ in message.names]
        picker = self.query_one("#source", Select)
        chosen = picker.value
        with self.prevent(Select.Changed):  # the options are new, the choice is not
            picker.set_options([(f"{n}  {label}", n) for n, label in message.names])
            picker.value = chosen


class SourceMode:
    """Which stage-1 source Explore shows ("nca": the rule view) and, for any other, the title and
    statistics of the sequence on screen. Both modes draw into the screen's title label and
    statistics panel; the screen's CSS class -source swaps the rule's grid and fields for the
    source's view."""

    def __init__(self, screen: Screen):
        self.screen = screen
        self.name = "nca"  # the source on screen
        self.sample = None  # the sample on screen (services.source_samples.SourceView), once one is

    @property
    def active(self) -> bool:
        """Whether a source other than NCA is on screen."""
        return self.name != "nca"

    @property
    def view(self) -> SourceView:
        return self.screen.query_one("#source-view", SourceView)

    def switch(self, name: str, seed: int) -> None:
        """Show source `name` from its first sequence (of stream `seed`); for NCA, hide the view."""
        self.name, self.sample = name, None
        self.screen.set_class(self.active, "-source")
        self.screen.refresh_bindings()  # `n` is the next rule or the next sequence
        if not self.active:
            self.view.stop()
            return
        self._title(f"{escape(name)}: reading its sequences ...")
        self.view.start(name, seed)

    def shown(self, sample) -> bool:
        """A sample's first item came on screen: it is titled and its statistics are the ones to
        show; False for one shown before the source changed (stale)."""
        if sample.name != self.name:
            return False
        self.sample = sample
        self._title(f"{escape(sample.name)}  {escape(sample.label)}\n"
                    f"sequence {sample.index}: {KINDS[SourceView.kind_of(sample)]}")
        return True

    def failed(self) -> None:
        self._title(f"{escape(self.name)}: nothing to show")

    def stats(self, playing: bool, fps: float) -> Pairs:
        """The statistics the source's sample defines, of the sequence that came on screen last."""
        p = Pairs().add("playing" if playing else "paused", f"{fps:g} fps")
        v = self.sample
        if v is not None:
            p.add(f"[b]{escape(v.name)} sequence {v.index}[/]")
            p.add(*[f"{escape(str(k))} {escape(stat_text(x))}" for k, x in v.stats.items()])
        return p

    def _title(self, text: str) -> None:
        self.screen.query_one("#rule-title", Label).update(text)
