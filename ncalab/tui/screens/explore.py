"""Explore: one random rule running live, with its complexity statistics."""

from __future__ import annotations

import time
from collections import deque

import numpy as np
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header, Input, Label, Sparkline, Static

from ncalab.errors import NcalabError
from ncalab.tui.widgets.grid_view import GridView

WINDOW = 10  # frames in the rolling complexity window (the spec's scoring window)
STATS_EVERY_S = 0.1  # statistics refresh at most 10 times a second; the grid at full speed


class ExploreScreen(Screen):
    AUTO_FOCUS = ""  # nothing focused: keys drive the simulation; click or tab into a field to edit it
    BINDINGS = [
        Binding("escape", "blur", "Leave field", show=False),
        Binding("space", "toggle_play", "Play/pause", id="explore.play"),
        Binding("s", "step", "Step", id="explore.step"),
        Binding("n", "new_rule", "New rule", id="explore.new_rule"),
        Binding("plus,equals_sign", "faster", "Faster", id="explore.faster"),
        Binding("minus", "slower", "Slower", id="explore.slower"),
    ]

    def __init__(self, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.seed = seed
        self.playing = True
        self.fps = 8.0
        self.batch = None
        self.cfg = None
        self.frames: deque[np.ndarray] = deque(maxlen=WINDOW)
        self.scores: deque[float] = deque(maxlen=120)
        self.step_count = 0
        self._stats_at = 0.0

    def compose(self) -> ComposeResult:
        if self.seed is None:
            self.seed = getattr(self.app, "seed", 0)
        yield Header()
        with Horizontal(id="explore"):
            with Vertical(id="stage"):
                yield Label("", id="rule-title")
                yield GridView(id="grid")
            with Vertical(id="side"):
                yield Static("", id="stats")
                yield Label("score over time")
                yield Sparkline([], id="score-spark")
                yield Label("rule seed")
                yield Input(str(self.seed), id="seed", type="integer")
                yield Label("grid H x W, colours, patch")
                yield Input("12 12 10 2", id="shape")
                yield Label("temperature, identity bias")
                yield Input("0.0001 0", id="sampling")
                yield Label("", id="message")
        yield Footer()

    def on_mount(self) -> None:
        self.playing = getattr(self.app, "autoplay", True)
        self.timer = self.set_interval(1 / self.fps, self.tick)
        self.warm_engine()  # torch and numba load in a thread: the first frame does not wait

    @work(thread=True, group="engine-import")
    def warm_engine(self) -> None:
        import ncalab.nca.engine  # noqa: F401

        self.app.call_from_thread(self.load_rule)

    # -- settings ------------------------------------------------------------------------------
    def _read_settings(self):
        from ncalab.nca.config import NCAConfig

        try:
            seed = int(self.query_one("#seed", Input).value)
        except ValueError:
            raise NcalabError("the rule seed must be a whole number") from None
        if not 0 <= seed < 2**63:
            raise NcalabError("the rule seed must be between 0 and 2**63-1")
        parts = self.query_one("#shape", Input).value.split()
        samp = self.query_one("#sampling", Input).value.split()
        try:
            h, w, c, p = (int(x) for x in parts)
            temperature, ib = (float(x) for x in samp)
        except ValueError:
            raise NcalabError("give four whole numbers (H W colours patch) and two numbers (temperature bias)") from None
        return seed, NCAConfig(height=h, width=w, alphabet=c, patch=p, temperature=temperature, identity_bias=ib)

    def load_rule(self) -> None:
        msg = self.query_one("#message", Label)
        try:
            seed, cfg = self._read_settings()
        except NcalabError as e:
            msg.update(f"[red]{e}[/]")
            return
        from ncalab.nca.engine import RuleBatch

        msg.update("")
        self.seed, self.cfg = seed, cfg
        self.batch = RuleBatch([seed], [seed], cfg)
        self.frames.clear()
        self.scores.clear()
        self.step_count = 0
        self.query_one("#grid", GridView).set_alphabet(cfg.alphabet)
        self.query_one("#rule-title", Label).update(f"rule {seed}   {cfg.height}x{cfg.width}   C={cfg.alphabet}   P={cfg.patch}")
        self.advance()

    # -- simulation ----------------------------------------------------------------------------
    def advance(self) -> None:
        if self.batch is None:
            return
        frame = self.batch.frames(1)[0, 0]
        self.step_count = self.batch.steps_done
        self.frames.append(frame)
        self.query_one("#grid", GridView).update_grid(frame)
        now = time.monotonic()
        if now - self._stats_at >= STATS_EVERY_S or not self.playing:
            self._stats_at = now
            self.update_stats()

    def update_stats(self) -> None:
        from ncalab.nca.analysis import trajectory_stats
        from ncalab.nca.bands import REPORT_BINS
        from ncalab.nca.complexity import score_tokens
        from ncalab.nca.stream import patch_tokens

        grids = np.stack(self.frames)[None]
        toks = patch_tokens(grids, self.cfg)
        score = float(score_tokens(toks)[0])
        self.scores.append(score)
        st = trajectory_stats(grids, toks, self.cfg)
        band = next((n for n, lo, hi in REPORT_BINS if lo <= score < hi or (hi == 1.0 and score >= lo)), "?")
        self.query_one("#stats", Static).update(
            f"step {self.step_count}  {'playing' if self.playing else 'paused'}  {self.fps:g} fps\n"
            f"gzip score  {score:.3f}  (band {band}; last {len(self.frames)} frames)\n"
            f"cell entropy  {st['cell_entropy_bits'][0]:.2f} bits\n"
            f"change rate  {st['change_rate'][0]:.3f}\n"
            f"distinct tokens  {int(st['distinct_tokens'][0])}\n"
            f"unigram entropy  {st['unigram_entropy_bits'][0]:.2f} bits"
        )
        self.query_one("#score-spark", Sparkline).data = list(self.scores)

    def tick(self) -> None:
        if self.playing:
            self.advance()

    # -- actions -------------------------------------------------------------------------------
    def action_blur(self) -> None:
        self.set_focus(None)

    def action_toggle_play(self) -> None:
        self.playing = not self.playing
        self.update_stats()

    def action_step(self) -> None:
        self.playing = False
        self.advance()

    def action_new_rule(self) -> None:
        rng = np.random.default_rng()
        self.query_one("#seed", Input).value = str(int(rng.integers(0, 2**31)))
        self.load_rule()

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
