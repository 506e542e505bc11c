"""Launch: choose preset, scale, the stage-1 source and its settings, corpus, seed and
overrides; see the budget; start a job. The source picker lists every registered source (a
broken plugin is left out with one notification); the chosen source's settings are fields
whose placeholders are the defaults, and a field filled in goes into the config as
`--set section.key=value` would."""

from __future__ import annotations

from rich.markup import escape
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Button, Footer, Input, Label, Select, Static
from textual.worker import get_current_worker

from ncalab.errors import NcalabError
from ncalab.services.config import resolve_config
from ncalab.services.families import preset_names
from ncalab.services.launch import How, launch
from ncalab.services.runs import training_estimate
from ncalab.services.sources import choices, setting_items, shown_default
from ncalab.tui.messages import Notice
from ncalab.tui.text import Pairs
from ncalab.tui.widgets.nav_bar import NavBar

PRESETS = ("code", "math", "web")
SCALES = ("tiny", "small", "paper")


class LaunchScreen(Screen):
    class InfoLoaded(Message):
        """The info panel's text (budget and estimate, or what is wrong), worked out in a worker for
        the form as it stood at edit ``request``."""

        def __init__(self, request: int, text) -> None:
            super().__init__()
            self.request, self.text = request, text

    class SourcesListed(Message):
        """The registered sources (services.sources.Choice each) and {name: why} of broken plugins."""

        def __init__(self, choices: list, broken: dict[str, str]) -> None:
            super().__init__()
            self.choices, self.broken = choices, broken

    class Launched(Message):
        """A job started in the background: experiment ``exp_id``, now ``status``."""

        def __init__(self, exp_id: str, status: str) -> None:
            super().__init__()
            self.exp_id, self.status = exp_id, status

    BINDINGS = [Binding("ctrl+s", "start", "Start in background", id="launch.start")]

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.info_request = 0  # the form's latest edit: a panel worked out for an older one is stale
        self.sources: dict = {}  # name -> services.sources.Choice, once listed
        self.shown_source: str | None = None  # the source whose settings fields are on screen

    def compose(self) -> ComposeResult:
        yield NavBar("launch")
        with Horizontal(id="launch"):
            with VerticalScroll(id="launch-form"):
                yield Label("preset (target domain)")
                yield Select([(p, p) for p in self._presets()], value="code", allow_blank=False, id="preset")
                yield Label("scale")
                yield Select([(s, s) for s in SCALES], value="tiny", allow_blank=False, id="scale")
                yield Label("corpus (blank: the preset's default)")
                yield Input("", id="corpus", placeholder="python-stdlib, a path, or hf:NAME")
                yield Label("seed")
                yield Input("0", id="seed", type="integer")
                yield Label("stage-1 source")
                yield Select([("nca  NCA", "nca")], value="nca", allow_blank=False, id="source")
                yield Vertical(id="source-settings")
                yield Label("overrides, e.g. stage1.lr=3e-4 nca.alphabet=2")
                yield Input("", id="overrides")
                yield Label("processes (GPUs) under torchrun")
                yield Input("1", id="nproc", type="integer")
                yield Label("track: tensorboard, mlflow, wandb")
                yield Input("", id="track", placeholder="e.g. tensorboard")
                yield Button("Start in background", id="start", variant="primary")
            yield Static("", id="launch-info")
        yield Footer()

    def _presets(self) -> list[str]:
        try:
            return preset_names(getattr(self.app, "home", None))
        except NcalabError:
            return list(PRESETS)

    def on_screen_resume(self) -> None:
        # families saved in the Families screen appear here
        sel = self.query_one("#preset", Select)
        sel.set_options([(p, p) for p in self._presets()])

    def on_mount(self) -> None:
        self.update_info()
        self.list_sources()

    # -- the source picker ---------------------------------------------------------------------
    @work(thread=True, exclusive=True, group="launch-sources")
    def list_sources(self) -> None:
        listed, broken = choices()  # imports each source once: off the UI thread
        self.post_message(self.SourcesListed(listed, broken))

    @on(SourcesListed)
    async def sources_listed(self, message: SourcesListed) -> None:
        self.sources = {c.name: c for c in message.choices}
        for name, why in message.broken.items():
            self.notify(f"source plugin {name!r} is broken and left out: {why}", severity="warning")
        picker = self.query_one("#source", Select)
        chosen = picker.value if picker.value in self.sources else "nca"
        with self.prevent(Select.Changed):  # the options are new, the choice is not
            picker.set_options([(f"{c.name}  {c.label}", c.name) for c in message.choices])
            picker.value = chosen
        await self.show_settings(chosen)

    @on(Select.Changed, "#source")
    async def source_changed(self, event: Select.Changed) -> None:
        await self.show_settings(event.value)

    async def show_settings(self, name) -> None:
        """The chosen source's settings as fields, blank (the placeholder is the default)."""
        choice = self.sources.get(name)
        if choice is None or name == self.shown_source:
            return
        self.shown_source = name
        box = self.query_one("#source-settings", Vertical)
        await box.remove_children()
        if not choice.settings_key:
            await box.mount(Label(f"[dim]{escape(choice.label)}: no settings of its own[/]"))
            self.update_info()
            return
        fields = []
        for key, default in choice.settings.items():
            fields.append(Horizontal(Label(f"{choice.settings_key}.{key}", classes="setting-label"),
                                     Input("", placeholder=shown_default(default), id=f"setting-{key}",
                                           classes="setting"), classes="setting-row"))
        await box.mount_all(fields)
        self.update_info()  # the panel says which source, with the fields now on screen

    def source_sets(self) -> list[str]:
        """`--set` items of the chosen source and the settings filled in."""
        choice = self.sources.get(self.shown_source)
        if choice is None:
            return []
        typed = {i.id.removeprefix("setting-"): i.value for i in self.query("#source-settings Input.setting")}
        return setting_items(choice, typed)

    def _config(self):
        seed_text = self.query_one("#seed", Input).value.strip()
        try:
            seed = int(seed_text)
        except ValueError:
            raise NcalabError("the seed must be a whole number") from None
        corpus = self.query_one("#corpus", Input).value.strip() or None
        sets = self.source_sets() + self.query_one("#overrides", Input).value.split()
        track = self.query_one("#track", Input).value.replace(",", " ").split()
        if track:
            sets.append(f"runtime.track={','.join(track)}")
        nproc = self.query_one("#nproc", Input).value.strip() or "1"
        if nproc != "1":
            sets.append(f"runtime.nproc={nproc}")
        return resolve_config(self.query_one("#preset", Select).value, self.query_one("#scale", Select).value,
                              None, sets, corpus=corpus, seed=seed, home=getattr(self.app, "home", None))

    @on(Select.Changed)
    @on(Input.Changed)
    def update_info(self) -> None:
        self.info_request += 1
        self.show_info(self.info_request)

    @work(thread=True, exclusive=True, group="launch-info")
    def show_info(self, request: int) -> None:
        try:
            cfg = self._config()
            est = training_estimate(self.app.stores.reader(), cfg)
            m = cfg.model
            text = (Pairs().add(f"[b]{cfg.preset} / {cfg.scale}[/b]", f"seed {cfg.seed}")
                    .add(f"model: {m.n_layer} layers", f"width {m.d_model}", f"{m.n_head} heads")
                    .add(f"corpus: {escape(str(cfg.data.corpus))}"))
            if cfg.stage1.source == "nca":  # a band is NCA's
                text.add(f"band: {cfg.band().lo:g} < score < {cfg.band().hi:g}")
            text = (text.add(f"stage 1: {escape(self._source_line(cfg))}")
                    .add(f"stage 1 budget: {cfg.stage1.tokens:,} {escape(self._source_label(cfg))} tokens")
                    .add(f"stage 2 budget: {cfg.stage2.tokens:,} tokens,", "twice (NCA-init and scratch)")
                    .add(f"processes: {cfg.runtime.nproc}", f"({cfg.runtime.parallel})" if cfg.runtime.nproc > 1 else "")
                    .add(est))
        except NcalabError as e:
            text = f"[red]{escape(str(e))}[/]"
        if not get_current_worker().is_cancelled:  # a newer edit replaced this one: its panel shows instead
            self.post_message(self.InfoLoaded(request, text))

    def _source_label(self, cfg) -> str:
        choice = self.sources.get(cfg.stage1.source)
        return choice.label if choice else cfg.stage1.source

    def _source_line(self, cfg) -> str:
        """'eca  eca.width=50 eca.rule_class=3': the source and its settings set here."""
        chosen = self.source_sets()[1:]
        return "  ".join([cfg.stage1.source, *chosen]) if chosen else f"{cfg.stage1.source} (its defaults)"

    @on(InfoLoaded)
    def info_loaded(self, message: InfoLoaded) -> None:
        if message.request == self.info_request:  # else worked out for an older edit of the form: stale
            self.query_one("#launch-info", Static).update(message.text)

    @on(Button.Pressed, "#start")
    def start_pressed(self) -> None:
        self.action_start()

    def action_start(self) -> None:
        self.launch()

    @work(thread=True, exclusive=True, group="launch")
    def launch(self) -> None:
        try:
            cfg = self._config()
            store = self.app.stores.writer()  # the first launch creates the store
            job = launch(cfg, store, How.BACKGROUND)
        except NcalabError as e:
            self.post_message(Notice(str(e), severity="error"))
            return
        self.post_message(self.Launched(job.experiment_id, job.status))

    @on(Launched)
    def launched(self, message: Launched) -> None:
        self.notify(f"{message.exp_id} {message.status}")
        self.app.switch_mode("runs")  # where the new job shows
