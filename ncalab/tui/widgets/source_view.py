"""A stage-1 source running live (Explore with a source other than NCA): its sequences one after
another, scrolling. A source with a grid (ECA's space-time diagram) scrolls up a row at a time;
Dyck, shuffle-Dyck and ww scroll left as a depth profile (stack depth over position); any other
source shows its tokens wrapped into rows. What each is drawn as is ncalab.display.source_views.
"""

from __future__ import annotations

import threading
from collections import deque

from rich.segment import Segment
from rich.style import Style
from textual import on, work
from textual.message import Message
from textual.strip import Strip
from textual.widget import Widget
from textual.worker import get_current_worker

from ncalab.display.source_views import profile, profile_lines, token_rows, view_kind
from ncalab.lazy import np
from ncalab.services.source_samples import FAILURES, SourceFeed
from ncalab.tui.widgets.half_blocks import HalfBlocks, truecolor_filters

KEEP = {"grid": 160, "tokens": 160, "profile": 1024}  # items kept: more rows or columns than a terminal shows
STEP = {"grid": 1, "tokens": 1, "profile": 4}  # items a step shows
TOKEN_WIDTH = 48  # tokens of a row where a source has no picture of its own
PROFILE_STYLE = Style.parse("#2ca02c")  # the palette's green, as truecolor (no ANSI filter here)
LOW = 64  # fewer items than this waiting: time for the next sequence


class SourceView(Widget):
    """``start`` a source, then ``advance`` to show more of it: its sequences are read in a
    worker (services.source_samples.SourceFeed), a few ahead of what is on screen."""

    class Fed(Message):
        """Samples read for start request ``request`` (``error``: none, and why)."""

        def __init__(self, request: int, views: list, error: str | None = None) -> None:
            super().__init__()
            self.request, self.views, self.error = request, views, error

    class SampleShown(Message):
        """A sample's first item came on screen: its statistics are the ones to show."""

        def __init__(self, view) -> None:
            super().__init__()
            self.view = view

    class Failed(Message):
        def __init__(self, error: str) -> None:
            super().__init__()
            self.error = error

    DEFAULT_CSS = """
    SourceView { width: 1fr; height: 1fr; min-width: 20; }
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.request = 0  # the source wanted on screen: samples read for an older start are stale
        self.fetching = False
        self.source: tuple[str, int] | None = None  # (name, seed) playing
        self._feed, self._feed_lock = None, threading.Lock()
        self.reset("profile")

    def start(self, name: str, seed: int) -> None:
        """Show the source `name` from its first held-out sequence (of `seed`)."""
        self.request += 1
        self.source, self.fetching = (name, seed), True
        self.reset(self.kind)
        self.fetch(self.request, name, seed, True)

    def stop(self) -> None:
        """Show nothing; samples still being read are stale."""
        self.request += 1
        self.source, self.fetching = None, False
        self.reset(self.kind)

    def skip(self) -> None:
        """Show the next sequence now: what waits of this one is dropped."""
        while self.pending and self.pending[0][1] is None:
            self.pending.popleft()
        if self.pending:
            self.advance()
        else:
            self._more()  # shown when it comes

    def _more(self) -> None:
        if self.source is not None and not self.fetching:
            self.fetching = True
            self.fetch(self.request, *self.source, False)

    @work(thread=True, exclusive=True, group="source-feed")
    def fetch(self, request: int, name: str, seed: int, restart: bool) -> None:
        with self._feed_lock:  # one read at a time: a feed's index moves on as it reads
            try:
                if restart or self._feed is None:
                    self._feed = SourceFeed(name, seed)
                message = self.Fed(request, [self._feed.next(), self._feed.next()])
            except FAILURES as e:
                message = self.Fed(request, [], str(e).splitlines()[0] if str(e) else type(e).__name__)
        if not get_current_worker().is_cancelled:
            self.post_message(message)

    @on(Fed)
    def fed(self, message: Fed) -> None:
        if message.request != self.request:
            return  # read for a source since replaced: stale
        self.fetching = False
        if message.error is not None:
            self.stop()  # nothing to show, and nothing to read again
            self.post_message(self.Failed(message.error))
            return
        first = message.views[0]
        if not self.shown and not self.pending:
            self.reset(self.kind_of(first), max(2, int(first.grid.max()) + 1) if first.grid is not None else 10)
        waiting, before = bool(self.pending), len(self.pending)
        for view in message.views:
            self.feed(view)
        if not waiting:
            self.advance()  # the first item (or the one skipped to) at once, playing or not
        if len(self.pending) > before and self.wants_more:
            self._more()  # short sequences (text's rows of tokens): read on until LOW items wait

    def reset(self, kind: str, colours: int = 2) -> None:
        """Clear it, to show items of `kind` ("grid", "profile" or "tokens")."""
        self.kind = kind
        self.shown: deque = deque(maxlen=KEEP[kind])
        self.pending: deque = deque()  # (item, the sample it starts, or None)
        self.top = 1  # the deepest depth seen: a full column
        self._blocks = HalfBlocks(max(2, colours))
        self._lines: tuple | None = None  # (size, lines) of the profile drawn for the items shown
        self.refresh()

    @staticmethod
    def kind_of(view) -> str:
        return view_kind(view.name, view.grid)

    def feed(self, view) -> None:
        """Queue one sample's sequence behind what is waiting."""
        if self.kind == "grid":
            items = list(view.grid)
        elif self.kind == "profile":
            items = profile(view.name, view.sequences[0], view.vocab_size).tolist()
            self.top = max(self.top, max(items, default=1))
        else:
            items = list(token_rows(view.sequences[0], TOKEN_WIDTH, self._blocks.colours))
        self.pending.extend((item, view if i == 0 else None) for i, item in enumerate(items))

    @property
    def wants_more(self) -> bool:
        return len(self.pending) < LOW

    def advance(self, steps: int = 1) -> None:
        """Show the next items (a SampleShown for a sample that starts); read more when few wait."""
        started = None
        for _ in range(min(len(self.pending), steps * STEP[self.kind])):
            item, view = self.pending.popleft()
            self.shown.append(item)
            started = view or started
        self._lines = None
        self.refresh()
        if started is not None:
            self.post_message(self.SampleShown(started))
        if self.wants_more:
            self._more()

    def render_line(self, y: int) -> Strip:
        width, height = self.size
        if self.kind == "profile":
            return self._profile_line(y, width, height)
        rows = list(self.shown)[-2 * height:] if self.shown else []
        top, bottom = 2 * y, 2 * y + 1
        if top >= len(rows):
            return Strip.blank(width)
        upper = np.asarray(rows[top])[:width]
        return self._blocks.line(upper, rows[bottom] if bottom < len(rows) else None).crop(0, width)

    def get_line_filters(self):
        return truecolor_filters(self.app.get_line_filters())

    def _profile_line(self, y: int, width: int, height: int) -> Strip:
        if self._lines is None or self._lines[0] != (width, height):
            depth = list(self.shown)[-width:] if width else []
            lines = profile_lines(depth, height, self.top) if depth else [""] * height
            self._lines = ((width, height), lines)
        lines = self._lines[1]
        if y >= len(lines):
            return Strip.blank(width)
        return Strip([Segment(lines[y], PROFILE_STYLE)], len(lines[y])).extend_cell_length(width)
