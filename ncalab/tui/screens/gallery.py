"""Families: rules drawn from a domain's complexity band, running side by side, with the
band's place in the score histogram; a family (band plus settings) can be saved by name.
`c` compares the stage-1 sources instead: every registered source's fixed sample (seeded, the
same each time) drawn small, with the statistics that source defines."""

from __future__ import annotations

import numpy as np
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, ContentSwitcher, Footer, Input, Label, Select, Static
from textual.worker import get_current_worker

from ncalab.errors import NcalabError
from ncalab.services.explore import band_rules
from ncalab.services.families import save_family
from ncalab.services.nca import Band, NCAConfig, domain_band
from ncalab.services.source_samples import fixed_samples
from ncalab.tui.text import histogram_text
from ncalab.tui.widgets.grid_view import GridView
from ncalab.tui.widgets.nav_bar import NavBar
from ncalab.tui.widgets.source_cards import SourceCards

N_SHOWN = 6
SURVEY = 2000  # random rules behind the histogram


class GalleryScreen(Screen):
    class RulesDrawn(Message):
        """The rules a worker drew for draw request ``request`` (the settings then chosen): the
        running ``batch`` of the ``found`` ones in ``band`` (None: none), and every surveyed score."""

        def __init__(self, request: int, batch, scores: np.ndarray, band, cfg, found: int) -> None:
            super().__init__()
            self.request, self.batch, self.scores, self.band, self.cfg, self.found = request, batch, scores, band, cfg, found

    class SourcesSampled(Message):
        """Every registered source's fixed sample (services.source_samples.SourceView each)."""

        def __init__(self, views: list) -> None:
            super().__init__()
            self.views = views

    AUTO_FOCUS = ""
    BINDINGS = [Binding("d", "draw", "Draw rules", id="families.draw"), Binding("space", "toggle_play", "Play/pause", id="families.play"),
                Binding("c", "compare", "Sources", id="families.compare")]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.batch = None
        self.playing = True
        self.scores: np.ndarray | None = None
        self.draw_request = 0  # the settings wanted on screen: rules drawn for an older request are stale
        self.sources_shown = 0  # sources on the compare cards (0: not sampled yet)

    def compose(self) -> ComposeResult:
        yield NavBar("families")
        with Horizontal(id="gallery"):
            with VerticalScroll(id="gallery-side"):
                yield Label("domain")
                yield Select([("code (0.3-0.4)", "code"), ("math (0.5+)", "math"), ("web (0.5+)", "web"),
                              ("custom band", "custom")], value="code", allow_blank=False, id="domain")
                yield Label("band LO HI (custom)")
                yield Input("0.3 0.4", id="band")
                yield Label("colours, patch")
                yield Input("10 2", id="alphabet")
                yield Static("", id="histogram")
                yield Label("save as family")
                yield Input("", id="family-name", placeholder="name, e.g. code-2col")
                yield Button("Save family", id="save")
                yield Label("", id="gallery-message")
            with ContentSwitcher(initial="gallery-grid", id="gallery-main"):
                yield Grid(*[GridView(id=f"g{i}") for i in range(N_SHOWN)], id="gallery-grid")
                yield SourceCards(id="source-cards")
        yield Footer()

    def on_mount(self) -> None:
        self.playing = getattr(self.app, "autoplay", True)
        self.set_interval(1 / 8, self.tick)
        self.action_draw()

    def settings(self):
        domain = self.query_one("#domain", Select).value
        try:
            lo, hi = (float(x) for x in self.query_one("#band", Input).value.split())
            c, p = (int(x) for x in self.query_one("#alphabet", Input).value.split())
        except ValueError:
            raise NcalabError("the band is two numbers LO HI; colours and patch are two whole numbers") from None
        band = Band(lo, hi) if domain == "custom" else domain_band(domain)
        return domain, band, NCAConfig(alphabet=c, patch=p)

    @on(Select.Changed, "#domain")
    def domain_changed(self, event: Select.Changed) -> None:
        if event.value != "custom":
            b = domain_band(event.value)
            self.query_one("#band", Input).value = f"{b.lo:g} {b.hi:g}"
        self.action_draw()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "family-name":
            self.action_draw()
        self.set_focus(None)

    def action_draw(self) -> None:
        msg = self.query_one("#gallery-message", Label)
        try:
            domain, band, cfg = self.settings()
        except NcalabError as e:
            msg.update(f"[red]{e}[/]")
            return
        msg.update("drawing rules ...")
        self.draw_request += 1
        self.draw(band, cfg, self.draw_request)

    @work(thread=True, exclusive=True, group="gallery-draw")
    def draw(self, band, cfg, request: int) -> None:
        fixed = getattr(self.app, "draw_seed", None)  # tests and snapshots draw the same rules
        stream = fixed if fixed is not None else int(np.random.default_rng().integers(0, 2**31))
        # SURVEY rules for the histogram; the first N_SHOWN in the band run side by side
        batch, scores, found = band_rules(cfg, band, stream, N_SHOWN, SURVEY)
        if not get_current_worker().is_cancelled:  # a newer draw replaced this one: it shows instead
            self.post_message(self.RulesDrawn(request, batch, scores, band, cfg, found))

    @on(RulesDrawn)
    def rules_drawn(self, message: RulesDrawn) -> None:
        if message.request != self.draw_request:
            return  # drawn for settings changed since: stale
        self._show(message.batch, message.scores, message.band, message.cfg, message.found)

    def _show(self, batch, scores, band, cfg, found: int) -> None:
        self.batch, self.scores = batch, scores
        self.query_one("#histogram", Static).update(histogram_text(scores, band.lo, band.hi, width=14))
        for i in range(N_SHOWN):
            self.query_one(f"#g{i}", GridView).set_alphabet(cfg.alphabet)
        note = "" if found == N_SHOWN else f" (only {found} of {SURVEY:,} rules are in this band)"
        self.query_one("#gallery-message", Label).update(f"{found} rules from the band{note}")
        self.tick(force=True)

    def tick(self, force: bool = False) -> None:
        if self.batch is None or not (self.playing or force):
            return
        frames = self.batch.state() if force else self.batch.frames(1)[:, 0]
        for i, g in enumerate(frames[:N_SHOWN]):
            self.query_one(f"#g{i}", GridView).update_grid(g)

    def action_toggle_play(self) -> None:
        self.playing = not self.playing

    @on(Button.Pressed, "#save")
    def save(self) -> None:
        msg = self.query_one("#gallery-message", Label)
        try:
            domain, band, cfg = self.settings()
            target = "code" if domain == "custom" else domain
            name = self.query_one("#family-name", Input).value.strip()
            save_family(name, target, band, cfg, getattr(self.app, "home", None))
        except NcalabError as e:
            msg.update(f"[red]{e}[/]")
            return
        msg.update(f"saved family {name!r}: `ncalab run --preset {name}`")

    # -- the stage-1 sources side by side ------------------------------------------------------
    def action_compare(self) -> None:
        """Switch between the NCA rules and the sources' cards (sampled the first time)."""
        switcher = self.query_one("#gallery-main", ContentSwitcher)
        comparing = switcher.current != "source-cards"
        switcher.current = "source-cards" if comparing else "gallery-grid"
        if comparing and not self.sources_shown:
            self.query_one("#gallery-message", Label).update("sampling every source ...")
            self.sample_sources()

    @work(thread=True, exclusive=True, group="gallery-sources")
    def sample_sources(self) -> None:
        self.post_message(self.SourcesSampled(fixed_samples()))

    @on(SourcesSampled)
    async def sources_sampled(self, message: SourcesSampled) -> None:
        self.sources_shown = len(message.views)
        await self.query_one("#source-cards", SourceCards).show(message.views)
        self.query_one("#gallery-message", Label).update(
            f"{self.sources_shown} sources, each its fixed sample (seed 0); c: back to the rules")
