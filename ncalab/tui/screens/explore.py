"""Explore: one rule running live, with its complexity statistics.

Rules come from the default domain's band (code, 0.3-0.4), as stage 1 trains on them: `n`
draws the next one, `b` switches to any random rule and back, and the band's share of random
rules stays on screen (most rules settle into a still or near-still grid).

The source field runs any other registered stage-1 source live instead: that mode is
explore_source.py's; this module hands it the field's changes and the source view's messages.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import deque

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, Select, Sparkline, Static
from textual.worker import get_current_worker

from ncalab.errors import NcalabError
from ncalab.lazy import np
from ncalab.services.live import mark_live_view
from ncalab.services.nca import NCAConfig, domain_band
from ncalab.tui.latest import LatestOnly
from ncalab.tui.screens.explore_source import SourceMode, SourcePicker
from ncalab.tui.text import Pairs, share_line
from ncalab.tui.widgets.grid_view import GridView
from ncalab.tui.widgets.nav_bar import NavBar
from ncalab.tui.widgets.source_view import SourceView

WINDOW = 10  # frames in the rolling complexity window (the spec's scoring window)
STATS_EVERY_S = 0.1  # statistics refresh at most 10 times a second; the grid at full speed
DOMAIN = "code"  # the default preset's domain, whose band Explore draws from
LIVE_MARK_S = 5.0  # how often a playing view renews its mark (jobs.allocation forgets it after 15 s)


class ExploreScreen(Screen):
    class RuleDrawn(Message):
        """The rule a worker drew for draw request ``request``, ready to run (``error``: none was
        drawn, and why)."""

        def __init__(self, request: int, seed: int | None = None, score: float | None = None, cfg=None, batch=None,
                     error: str | None = None) -> None:
            super().__init__()
            self.request, self.seed, self.score, self.cfg, self.batch, self.error = request, seed, score, cfg, batch, error

    class WindowScored(Message):
        """The statistics of the rolling window that ended at ``step`` of rule view ``view``."""

        def __init__(self, view: int, step: int, stats) -> None:
            super().__init__()
            self.view, self.step, self.stats = view, step, stats

    AUTO_FOCUS = ""  # nothing focused: keys drive the simulation; click or tab into a field to edit it
    BINDINGS = [
        Binding("escape", "blur", "Leave field", show=False),
        Binding("space", "toggle_play", "Play", id="explore.play"),
        Binding("s", "step", "Step", id="explore.step"),
        Binding("n", "new_rule", "New rule", id="explore.new_rule"),
        Binding("n", "next_sequence", "Next sequence", id="explore.next_sequence"),  # another source's
        Binding("b", "toggle_band", "Band/any", id="explore.band"),
        Binding("plus,equals_sign", "faster", "Faster", id="explore.faster"),
        Binding("minus", "slower", "Slower", id="explore.slower"),
    ]

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.stream = seed  # rules are drawn from this random stream, in order
        self.live_lock, self.closed = threading.Lock(), False
        self.seed: int | None = None  # the rule on screen
        self.rule_score: float | None = None  # its score by the band test (first WINDOW frames)
        self.in_band = True  # what `n` draws: the band's rules, or any rule
        self.playing = True
        self.fps = 8.0
        self.batch = None
        self.cfg = None
        self.drawer = None
        self._drawing = threading.Lock()  # a draw still running when `n` is pressed again finishes first
        self.draw_request = 0  # the rule wanted on screen: a draw for an older request is stale
        self.frames: deque[np.ndarray] = deque(maxlen=WINDOW)
        self.scores: deque[float] = deque(maxlen=120)
        self.step_count = 0
        self._stats_at = 0.0  # when the rolling window was last sent to be scored
        self._shown_at = 0.0  # when the statistics were last drawn
        self._late_draw = None  # a timer that draws statistics that came in between two draws
        self.view = 0  # counts the rules shown: a window scored for an earlier one is stale
        self.window_stats: tuple[int, dict] | None = None  # (step, statistics) of the newest window scored
        self.scorer: LatestOnly | None = None
        self._stats_lines = -1  # lines the statistics took when last drawn
        self.source_mode = SourceMode(self)  # NCA rules on screen, or another source's sequences

    @property
    def source(self) -> str:
        """The stage-1 source on screen ("nca": the rule view)."""
        return self.source_mode.name

    @property
    def source_sample(self):
        """The other source's sample on screen (services.source_samples.SourceView), or None."""
        return self.source_mode.sample

    @property
    def source_names(self) -> list[str]:
        """The registered sources, once listed."""
        return self.query_one(SourcePicker).names

    def compose(self) -> ComposeResult:
        if self.stream is None:
            self.stream = getattr(self.app, "seed", None)
        if self.stream is None:
            self.stream = secrets.randbelow(2**62)
        self.band = domain_band(DOMAIN)
        yield NavBar("explore")
        with Horizontal(id="explore"):
            with Vertical(id="stage"):
                yield Label("loading the engine ...", id="rule-title")
                yield GridView(id="grid")
                yield SourceView(id="source-view")
            with VerticalScroll(id="side"):
                yield SourcePicker()
                yield Static("", id="stats")
                yield Static("", id="draw-info", classes="nca-only")
                yield Label("score of the last 10 frames, over time", id="spark-label", classes="nca-only")
                yield Sparkline([], id="score-spark", classes="nca-only")
                with Horizontal(classes="field nca-only"):
                    yield Label("rule seed")
                    yield Input("", id="seed", type="integer")
                with Horizontal(classes="field nca-only"):
                    yield Label("H W colours P")
                    yield Input("12 12 10 2", id="shape")
                with Horizontal(classes="field nca-only"):
                    yield Label("temp. bias")
                    yield Input("0.0001 0", id="sampling")
                yield Label("", id="message")
        yield Footer()

    def on_mount(self) -> None:
        self.playing = getattr(self.app, "autoplay", True)
        # gzip at level 9 of a 64x64 window takes longer than a frame: scored off the UI thread
        self.scorer = LatestOnly(self._score_window, self._window_scored, name="ncalab-explore-stats")
        self.timer = self.set_interval(1 / self.fps, self.tick)
        # A playing view keeps a CPU core busy: the job queue counts it when it shares the cores.
        self.set_interval(LIVE_MARK_S, self.mark_live)
        self.show_draw_info()
        # torch and numba load in the draw's worker, and the sources' entry points in theirs: both
        # start once the first frame is drawn (a thread importing holds the lock that drawing needs)
        self.call_after_refresh(self.action_new_rule)
        self.call_after_refresh(self.query_one(SourcePicker).list_sources)

    # -- settings ------------------------------------------------------------------------------
    def _read_cfg(self):
        parts = self.query_one("#shape", Input).value.split()
        samp = self.query_one("#sampling", Input).value.split()
        try:
            h, w, c, p = (int(x) for x in parts)
            temperature, ib = (float(x) for x in samp)
        except ValueError:
            raise NcalabError("give four whole numbers (H W colours patch) and two numbers (temperature bias)") from None
        return NCAConfig(height=h, width=w, alphabet=c, patch=p, temperature=temperature, identity_bias=ib)

    def _read_seed(self) -> int:
        try:
            seed = int(self.query_one("#seed", Input).value)
        except ValueError:
            raise NcalabError("the rule seed must be a whole number") from None
        if not 0 <= seed < 2**63:
            raise NcalabError("the rule seed must be between 0 and 2**63-1")
        return seed

    def _say(self, text: str) -> None:
        self.query_one("#message", Label).update(text)

    # -- drawing rules -------------------------------------------------------------------------
    def action_next_sequence(self) -> None:
        """Another source's next sequence, at once."""
        self.source_mode.view.skip()

    def action_new_rule(self) -> None:
        """The next rule of the stream: in the band, or any (b switches)."""
        if self.source_mode.active:
            self.action_next_sequence()
            return
        try:
            cfg = self._read_cfg()
        except NcalabError as e:
            self._say(f"[red]{e}[/]")
            return
        self._say("drawing a rule from the band ..." if self.in_band else "")
        self.draw_request += 1
        self.draw(cfg, self.in_band, self.draw_request)

    @work(thread=True, exclusive=True, group="explore-draw")
    def draw(self, cfg, in_band: bool, request: int) -> None:
        from ncalab.services.explore import (  # late: keeps torch, numpy, numba out of the first frame
            RuleDraw,
            start_rule,
        )

        with self._drawing:
            if self.drawer is None or self.drawer.cfg != cfg:  # new settings: a new count of the share
                self.drawer = RuleDraw(cfg, self.band, self.stream)
            try:
                drawn = self.drawer.next(in_band)
            except NcalabError as e:
                message = self.RuleDrawn(request, error=str(e))
            else:
                batch = start_rule(drawn.rule_seed, cfg)
                message = self.RuleDrawn(request, drawn.rule_seed, drawn.score, cfg, batch)
        if not get_current_worker().is_cancelled:  # a newer draw replaced this one: it shows instead
            self.post_message(message)

    @on(RuleDrawn)
    def rule_drawn(self, message: RuleDrawn) -> None:
        if message.request != self.draw_request:
            return  # drawn for an older request (`n` again, or a typed rule): stale
        if message.error is not None:
            self._drawn_nothing(message.error)
        else:
            self._show_rule(message.seed, message.score, message.cfg, message.batch)

    def _drawn_nothing(self, error: str) -> None:
        self._say(f"[red]{error} ({self.key_for('toggle_band')})[/]")
        self.show_draw_info()

    def key_for(self, action: str) -> str:
        """The key the user has for one of this screen's actions (keys.toml may remap it)."""
        for active in self.active_bindings.values():
            if active.binding.action == action:
                return self.app.get_key_display(active.binding)
        return "?"

    def load_rule(self) -> None:
        """Run the rule typed in the seed field (with the typed settings)."""
        try:
            seed, cfg = self._read_seed(), self._read_cfg()
        except NcalabError as e:
            self._say(f"[red]{e}[/]")
            return
        from ncalab.services.explore import (  # late: keeps torch, numpy, numba out of the first frame
            rule_score,
            start_rule,
        )

        self.draw_request += 1  # a draw still under way would replace the typed rule: it is stale now
        self._show_rule(seed, rule_score(seed, cfg), cfg, start_rule(seed, cfg))

    def _show_rule(self, seed: int, score: float, cfg, batch) -> None:
        self._say("")
        self.seed, self.rule_score, self.cfg, self.batch = seed, score, cfg, batch
        self.query_one("#seed", Input).value = str(seed)
        self.frames.clear()
        self.scores.clear()
        self.view += 1
        self.window_stats = None
        self.query_one("#grid", GridView).set_alphabet(cfg.alphabet)
        self.show_rule_title()
        self._shown(batch.state()[0])
        self.update_stats()  # the new rule's verdict at once
        self.show_draw_info()

    def show_rule_title(self) -> None:
        cfg = self.cfg
        if self.source_mode.active:
            return  # another source's title is on screen
        self.query_one("#rule-title", Label).update(
            f"rule {self.seed}\n{cfg.height}x{cfg.width}  {cfg.alphabet} colours  patch {cfg.patch}" if cfg else "")

    def show_draw_info(self) -> None:
        band = self.band.label()
        mode = f"in band {band} ({DOMAIN})" if self.in_band else "any rule"
        d = self.drawer
        measured = d is not None and d.cfg == self.cfg  # the share depends on the settings
        share = share_line(d.in_band_count, d.scored, band) if measured else share_line(0, 0, band)
        new, switch = escape(self.key_for("new_rule")), escape(self.key_for("toggle_band"))
        self.query_one("#draw-info", Static).update(
            Pairs().add(f"[b]{new}[/] draws: [b]{mode}[/]", f"[b]{switch}[/]: {'any rule' if self.in_band else 'in band'}")
            .add(f"[dim]{share}[/]"))

    # -- simulation ----------------------------------------------------------------------------
    def advance(self) -> None:
        if self.batch is None:
            return
        self._shown(self.batch.frames(1)[0, 0])

    def _shown(self, frame: np.ndarray) -> None:
        self.step_count = self.batch.steps_done
        self.frames.append(frame)
        self.query_one("#grid", GridView).update_grid(frame)
        now = time.monotonic()
        if now - self._stats_at >= STATS_EVERY_S or not self.playing:
            self._stats_at = now
            if len(self.frames) == WINDOW and self.scorer is not None:
                self.scorer.submit((self.view, self.step_count, list(self.frames), self.cfg))
            self.stats_due()

    # -- statistics: the window scored in a thread, drawn at most STATS_EVERY_S apart ------------
    @staticmethod
    def _score_window(job) -> dict:
        from ncalab.services.explore import window_stats  # late: keeps torch, numpy, numba out of the first frame

        _, _, frames, cfg = job
        return window_stats(frames, cfg)

    def _window_scored(self, job, stats) -> None:  # on the scoring thread
        self.post_message(self.WindowScored(job[0], job[1], stats))

    @on(WindowScored)
    def window_scored(self, message: WindowScored) -> None:
        if message.view != self.view or isinstance(message.stats, Exception):
            return
        if self.window_stats is None or message.step > self.window_stats[0]:
            self.window_stats = (message.step, message.stats)
            self.scores.append(message.stats["score"])
        self.stats_due()

    def stats_due(self) -> None:
        """Draw the statistics now, or (drawn less than STATS_EVERY_S ago) once that has passed."""
        wait = STATS_EVERY_S - (time.monotonic() - self._shown_at)
        if wait <= 0:
            self.update_stats()
        elif self._late_draw is None:
            self._late_draw = self.set_timer(wait, self.update_stats)

    def update_stats(self) -> None:
        if self._late_draw is not None:
            self._late_draw.stop()
            self._late_draw = None
        self._shown_at = time.monotonic()
        if self.source_mode.active:
            self.query_one("#stats", Static).update(self.source_mode.stats(self.playing, self.fps))
            return
        if self.cfg is None:
            return
        p = Pairs().add(f"step {self.step_count}", "playing" if self.playing else "paused", f"{self.fps:g} fps")
        inside = self.band.contains(np.array([self.rule_score]))[0]
        verdict = f"[green]in band {self.band.label()}[/]" if inside else f"[yellow]outside {self.band.label()}[/]"
        p.add(f"[b]score {self.rule_score:.3f}[/] [dim](first {WINDOW} frames)[/]", verdict)
        if len(self.frames) == WINDOW and self.window_stats is not None:
            st = self.window_stats[1]
            p.add(f"now {st['score']:.3f} [dim](last {WINDOW} frames)[/]")
            p.add(f"cell entropy {st['cell_entropy_bits']:.2f} bits", f"change rate {st['change_rate']:.3f}")
            p.add(f"distinct tokens {int(st['distinct_tokens'])}",
                  f"unigram entropy {st['unigram_entropy_bits']:.2f} bits")
        else:
            p.add(f"now - [dim](last {WINDOW} frames: {len(self.frames)} so far)[/]")
        stats = self.query_one("#stats", Static)
        # a new layout only when the text's height changes: a layout pass redraws the whole screen
        lines = len(p.lines(stats.content_size.width)) if stats.content_size.width else -1
        stats.update(p, layout=lines != self._stats_lines or lines < 0)
        self._stats_lines = lines
        self.query_one("#score-spark", Sparkline).data = list(self.scores)

    def tick(self) -> None:
        if self.playing:
            if self.source_mode.active:
                self.source_mode.view.advance()
            else:
                self.advance()

    @work(thread=True, exclusive=True, group="live-mark")
    def mark_live(self) -> None:
        with self.live_lock:  # a mark never lands after the screen has closed and removed it
            if not self.closed:
                mark_live_view(self.app.stores.home, self.playing)

    def on_unmount(self) -> None:
        if self.scorer is not None:
            self.scorer.close()
        with self.live_lock:
            self.closed = True
            mark_live_view(self.app.stores.home, playing=False)

    # -- actions -------------------------------------------------------------------------------
    def action_blur(self) -> None:
        self.set_focus(None)

    def action_toggle_play(self) -> None:
        self.playing = not self.playing
        self.update_stats()

    def action_step(self) -> None:
        self.playing = False
        if self.source_mode.active:
            self.source_mode.view.advance()
            self.update_stats()
        else:
            self.advance()

    def action_toggle_band(self) -> None:
        if self.source_mode.active:
            return  # a band is NCA's
        self.in_band = not self.in_band
        self.show_draw_info()
        self.action_new_rule()

    def _set_fps(self, fps: float) -> None:
        self.fps = min(60.0, max(1.0, fps))
        self.timer.stop()
        self.timer = self.set_interval(1 / self.fps, self.tick)
        self.update_stats()

    def action_faster(self) -> None:
        self._set_fps(self.fps * 1.5)

    def action_slower(self) -> None:
        self._set_fps(self.fps / 1.5)

    # -- any other stage-1 source: explore_source.SourceMode's -----------------------------------
    @on(Select.Changed, "#source")
    def source_changed(self, event: Select.Changed) -> None:
        if event.value == self.source_mode.name or event.value == Select.BLANK:
            return
        self.source_mode.switch(event.value, int(self.stream % 2**31))
        self.show_rule_title()  # back to NCA: the rule's title again
        self._say("")
        self.update_stats()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action in ("toggle_band", "new_rule"):  # rules and their band are NCA's
            return not self.source_mode.active
        if action == "next_sequence":
            return self.source_mode.active
        return True

    @on(SourceView.SampleShown)
    def sample_shown(self, message: SourceView.SampleShown) -> None:
        if self.source_mode.shown(message.view):
            self.update_stats()

    @on(SourceView.Failed)
    def source_failed(self, message: SourceView.Failed) -> None:
        self.source_mode.failed()
        self._say(f"[red]{escape(message.error)}[/]")

    @on(Input.Submitted)
    def settings_submitted(self) -> None:
        self.load_rule()
        self.set_focus(None)
