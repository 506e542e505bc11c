"""Help: every key of every screen; and the five-line getting started shown on first launch."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Markdown, Static

GETTING_STARTED = """\
[b]ncalab[/b] measures whether training on automata first helps a language model.
[b]e[/b] Explore: a rule running live; [b]n[/b] next rule of the band, [b]b[/b] any rule
[b]f[/b] Families: six rules of a band, and the share of random rules it keeps
[b]l[/b] Launch an experiment in the background; [b]r[/b] Runs and [b]w[/b] Sweeps follow it
[b]?[/b] every key   [b]ctrl+p[/b] any action   [b]q[/b] quit        [dim]escape or enter: start[/dim]"""

HELP = """\
# ncalab

**Everywhere** (the top line): `e` explore · `f` families · `l` launch · `r` runs · `w` sweeps · `i` studies · `?` this help · `ctrl+p` command palette · `q` quit

**Explore**: `space` play/pause · `s` single step · `n` next rule · `b` draw from the band / any rule · `+`/`-` speed ·
type a seed, a shape (`H W colours patch`) or sampling (`temperature bias`) and press enter.
`n` draws the next rule of a random stream in the code band (0.3-0.4), as stage 1 trains on them; `b`
switches to any rule, and the band's share of random rules stays on screen. A rule's **score** is the
band test's: the gzip score of its first 10 frames after the burn-in; **now** is the same measure on the
last 10 frames, which drifts as the rule runs (a rule stays in band by the first).
The **source** field runs any other stage-1 source live: ECA as its space-time diagram, Dyck,
shuffle-Dyck and ww as depth profiles, with the statistics that source defines; `n` its next sequence.

**Families**: pick a domain (or a custom band), see six rules from its band running and
the band's share of random rules; `d` draws again, `space` pauses; name and save the family
to use it as a preset (`ncalab run --preset NAME`, and in Launch). `c` compares the stage-1
sources instead: each one's fixed sample (seed 0) drawn small, with its statistics.

**Launch**: choose preset, scale, corpus, seed, the stage-1 source (its settings below it:
a blank field keeps the default shown) and overrides (`section.key=value`, space
separated); the panel shows the budget and an estimate from earlier runs; `ctrl+s` or the
button starts it as a background job.

**Runs**: arrows select · `space` mark to overlay curves · `c` cancel the selected experiment
(checkpoint first) · `u` resume it · `t` tag · `x` delete (asks first) · `/` filter ·
`p` write its HTML report (`report-ID.html` in the current folder) · `f5` refresh (it also refreshes itself every 2 s). Jobs keep running when the app closes.
Below 120 columns the details go under the table, and columns that do not fit whole are left out.

**Sweeps**: arrows select a sweep; its table (as `ncalab sweep show` prints it) and its
gain against a swept key update live · `k` plot the next key · `u` resume failed members ·
`c` cancel · `p` write its HTML report · `f5` refresh. Start sweeps with `ncalab sweep --grid KEY=V1,V2 --seeds N --detach`.

**Studies**: arrows select a scaling study; its grid (as `ncalab study show` prints it), each
size's loss against D for one arm and the answers update live · `a` plot the next arm ·
`m` refit with 1000 bootstrap resamples (the screen fits with 200, refitting when new points
are stored) · `u` resume failed members · `c` cancel · `f5` refresh. Start studies with
`ncalab study --size KEY=V1,V2 --budgets D1,D2 --sources nca,dyck --detach`.

**Remapping keys**: put a `[keys]` table in `~/.config/ncalab/keys.toml` (or the file named
by `NCALAB_KEYS`), e.g. `"explore.new_rule" = "x"`. Binding ids: go.explore, go.families,
go.launch, go.runs, go.sweeps, go.studies, help, quit, explore.play, explore.step, explore.new_rule,
explore.next_sequence, explore.band, explore.faster, explore.slower, families.draw, families.play,
families.compare, launch.start,
runs.refresh, runs.cancel, runs.resume, runs.mark, runs.tag, runs.delete, runs.filter, runs.report,
sweeps.refresh, sweeps.next_key, sweeps.resume, sweeps.cancel, sweeps.report,
studies.refresh, studies.next_arm, studies.resamples, studies.resume, studies.cancel.

Press `escape` to close.
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        yield Markdown(HELP, id="help")


class GettingStartedScreen(ModalScreen):
    """What the lab does and the first keys to press, in five lines (shown once, on first launch)."""

    BINDINGS = [Binding("escape,enter,space", "dismiss", "Start")]

    def compose(self) -> ComposeResult:
        yield Static(GETTING_STARTED, id="getting-started")
