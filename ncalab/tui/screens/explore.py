"""Explore: one rule running live, with its complexity statistics.

Rules come from the default domain's band (code, 0.3-0.4), as stage 1 trains on them: `n`
draws the next one, `b` switches to any random rule and back, and the band's share of random
rules stays on screen (most rules settle into a still or near-still grid).
"""

from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np
from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Input, Label, Sparkline, Static
from textual.worker import get_current_worker

from ncalab.errors import NcalabError
from ncalab.tui.text import Pairs, share_line
from ncalab.tui.widgets.grid_view import GridView
from ncalab.tui.widgets.nav_bar import NavBar

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

    AUTO_FOCUS = ""  # nothing focused: keys drive the simulation; click or tab into a field to edit it
    BINDINGS = [
        Binding("escape", "blur", "Leave field", show=False),
        Binding("space", "toggle_play", "Play", id="explore.play"),
        Binding("s", "step", "Step", id="explore.step"),
        Binding("n", "new_rule", "New rule", id="explore.new_rule"),
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
        self._stats_at = 0.0

    def compose(self) -> ComposeResult:
        from ncalab.nca.bands import domain_band

        if self.stream is None:
            self.stream = getattr(self.app, "seed", None)
        if self.stream is None:
            self.stream = int(np.random.default_rng().integers(0, 2**62))
        self.band = domain_band(DOMAIN)
        yield NavBar("explore")
        with Horizontal(id="explore"):
            with Vertical(id="stage"):
                yield Label("loading the engine ...", id="rule-title")
                yield GridView(id="grid")
            with VerticalScroll(id="side"):
                yield Static("", id="stats")
                yield Static("", id="draw-info")
                yield Label("score of the last 10 frames, over time", id="spark-label")
                yield Sparkline([], id="score-spark")
                with Horizontal(classes="field"):
                    yield Label("rule seed")
                    yield Input("", id="seed", type="integer")
                with Horizontal(classes="field"):
                    yield Label("H W colours P")
                    yield Input("12 12 10 2", id="shape")
                with Horizontal(classes="field"):
                    yield Label("temp. bias")
                    yield Input("0.0001 0", id="sampling")
                yield Label("", id="message")
        yield Footer()

    def on_mount(self) -> None:
        self.playing = getattr(self.app, "autoplay", True)
        self.timer = self.set_interval(1 / self.fps, self.tick)
        # A playing view keeps a CPU core busy: the job queue counts it when it shares the cores.
        self.set_interval(LIVE_MARK_S, self.mark_live)
        self.show_draw_info()
        self.action_new_rule()  # torch and numba load in that worker: the first frame does not wait

    # -- settings ------------------------------------------------------------------------------
    def _read_cfg(self):
        from ncalab.nca.config import NCAConfig

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
    def action_new_rule(self) -> None:
        """The next rule of the stream: in the band, or any (b switches)."""
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
        from ncalab.services.explore import RuleDraw

        with self._drawing:
            if self.drawer is None or self.drawer.cfg != cfg:  # new settings: a new count of the share
                self.drawer = RuleDraw(cfg, self.band, self.stream)
            try:
                drawn = self.drawer.next(in_band)
            except NcalabError as e:
                message = self.RuleDrawn(request, error=str(e))
            else:
                batch = self.start_batch(drawn.rule_seed, cfg)
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

    @staticmethod
    def start_batch(seed: int, cfg):
        from ncalab.nca.engine import RuleBatch

        batch = RuleBatch([seed], [seed], cfg)
        batch.frames(1)  # the first recorded frame, after the burn-in
        return batch

    def load_rule(self) -> None:
        """Run the rule typed in the seed field (with the typed settings)."""
        try:
            seed, cfg = self._read_seed(), self._read_cfg()
        except NcalabError as e:
            self._say(f"[red]{e}[/]")
            return
        from ncalab.services.explore import rule_score

        self.draw_request += 1  # a draw still under way would replace the typed rule: it is stale now
        self._show_rule(seed, rule_score(seed, cfg), cfg, self.start_batch(seed, cfg))

    def _show_rule(self, seed: int, score: float, cfg, batch) -> None:
        self._say("")
        self.seed, self.rule_score, self.cfg, self.batch = seed, score, cfg, batch
        self.query_one("#seed", Input).value = str(seed)
        self.frames.clear()
        self.scores.clear()
        self.query_one("#grid", GridView).set_alphabet(cfg.alphabet)
        self.query_one("#rule-title", Label).update(
            f"rule {seed}\n{cfg.height}x{cfg.width}  {cfg.alphabet} colours  patch {cfg.patch}")
        self._shown(batch.state()[0])
        self.show_draw_info()

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
            self.update_stats()

    def update_stats(self) -> None:
        if self.cfg is None:
            return
        p = Pairs().add(f"step {self.step_count}", "playing" if self.playing else "paused", f"{self.fps:g} fps")
        inside = self.band.contains(np.array([self.rule_score]))[0]
        verdict = f"[green]in band {self.band.label()}[/]" if inside else f"[yellow]outside {self.band.label()}[/]"
        p.add(f"[b]score {self.rule_score:.3f}[/] [dim](first {WINDOW} frames)[/]", verdict)
        if len(self.frames) == WINDOW:
            from ncalab.nca.analysis import trajectory_stats
            from ncalab.nca.complexity import score_tokens
            from ncalab.nca.stream import patch_tokens

            grids = np.stack(self.frames)[None]
            toks = patch_tokens(grids, self.cfg)
            score = float(score_tokens(toks)[0])
            self.scores.append(score)
            st = trajectory_stats(grids, toks, self.cfg)
            p.add(f"now {score:.3f} [dim](last {WINDOW} frames)[/]")
            p.add(f"cell entropy {st['cell_entropy_bits'][0]:.2f} bits", f"change rate {st['change_rate'][0]:.3f}")
            p.add(f"distinct tokens {int(st['distinct_tokens'][0])}",
                  f"unigram entropy {st['unigram_entropy_bits'][0]:.2f} bits")
        else:
            p.add(f"now - [dim](last {WINDOW} frames: {len(self.frames)} so far)[/]")
        self.query_one("#stats", Static).update(p)
        self.query_one("#score-spark", Sparkline).data = list(self.scores)

    def tick(self) -> None:
        if self.playing:
            self.advance()

    @work(thread=True, exclusive=True, group="live-mark")
    def mark_live(self) -> None:
        from ncalab.jobs.allocation import mark_live_view

        with self.live_lock:  # a mark never lands after the screen has closed and removed it
            if not self.closed:
                mark_live_view(self.app.stores.home, self.playing)

    def on_unmount(self) -> None:
        from ncalab.jobs.allocation import mark_live_view

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
        self.advance()

    def action_toggle_band(self) -> None:
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

    @on(Input.Submitted)
    def settings_submitted(self) -> None:
        self.load_rule()
        self.set_focus(None)
