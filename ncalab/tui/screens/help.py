"""Help: every key of every screen."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import ModalScreen
from textual.widgets import Markdown

HELP = """\
# ncalab

**Everywhere**: `e` explore · `f` families · `l` launch · `r` runs · `w` sweeps · `?` this help · `ctrl+p` command palette · `q` quit

**Explore**: `space` play/pause · `s` single step · `n` new random rule · `+`/`-` speed ·
type a seed, a shape (`H W colours patch`) or sampling (`temperature bias`) and press enter.
The gzip score is measured on the last 10 frames, as the paper scores rules.

**Families**: pick a domain (or a custom band), see six rules from its band running and
the band's share of random rules; `d` draws again, `space` pauses; name and save the family
to use it as a preset (`ncalab run --preset NAME`, and in Launch).

**Launch**: choose preset, scale, corpus, seed and overrides (`section.key=value`, space
separated); the panel shows the budget and an estimate from earlier runs; `ctrl+s` or the
button starts it as a background job.

**Runs**: arrows select · `space` mark to overlay curves · `c` cancel the selected experiment
(checkpoint first) · `u` resume it · `t` tag · `x` delete (asks first) · `/` filter ·
`f5` refresh (it also refreshes itself every 2 s). Jobs keep running when the app closes.

**Sweeps**: arrows select a sweep; its table (as `ncalab sweep show` prints it) and its
gain against a swept key update live · `k` plot the next key · `u` resume failed members ·
`f5` refresh. Start sweeps with `ncalab sweep --grid KEY=V1,V2 --seeds N --detach`.

**Remapping keys**: put a `[keys]` table in `~/.config/ncalab/keys.toml` (or the file named
by `NCALAB_KEYS`), e.g. `"explore.new_rule" = "x"`. Binding ids: go.explore, go.families,
go.launch, go.runs, go.sweeps, help, quit, explore.play, explore.step, explore.new_rule,
explore.faster, explore.slower, families.draw, families.play, launch.start, runs.refresh,
runs.cancel, runs.resume, runs.mark, runs.tag, runs.delete, runs.filter, sweeps.refresh,
sweeps.next_key, sweeps.resume.

Press `escape` to close.
"""


class HelpScreen(ModalScreen):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        yield Markdown(HELP, id="help")
