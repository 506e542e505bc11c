"""Every screen at 80x24 and 100x30, read as text: ids, statuses and results whole, no label
cut off from its value, and the keys each screen needs on screen.

The text is the app's own screenshot (Textual's export_screenshot, an SVG of the terminal
cells) turned back into lines, so what is asserted is what a user sees.
"""

import asyncio
import html
import re

import pytest
from conftest import MICRO, copy_lab, settle, until

from ncalab.tui.app import NcalabApp
from ncalab.tui.screens.gallery import GalleryScreen
from ncalab.tui.screens.help import GETTING_STARTED, HelpScreen

SIZES = [(80, 24), pytest.param((100, 30), marks=pytest.mark.slow)]  # the quick subset: the smallest
NAV = ["e Explore", "f Families", "l Launch", "r Runs", "w Sweeps", "i Studies", "? Help", "q Quit"]
# Labels that always have a value after them: none may end a line of a panel.
LABELS = ["ppl nca", "ppl scratch", "gain", "speedup", "seed", "lr", "score", "now", "step", "FLOPs", "stage1",
          "stage2", "model", "model:", "corpus", "corpus:", "budget:", "band:", "reinit", "cell entropy",
          "change rate", "distinct tokens", "unigram entropy", "tags"]
BORDERS = "▊▎▌│┃"


def screen_lines(app) -> list[str]:
    """The terminal's cells as lines of text, from the app's SVG screenshot."""
    svg = app.export_screenshot()
    width, height = app.size
    rows = [[" "] * width for _ in range(height)]
    cell = None
    for m in re.finditer(r'<text [^>]*?x="([\d.]+)"[^>]*?textLength="([\d.]+)"[^>]*?clip-path="url\(#[^"]*-line-(\d+)\)">'
                         r"(.*?)</text>", svg):
        text = html.unescape(m.group(4)).replace("\xa0", " ")  # the SVG keeps spaces as no-break ones
        cell = cell or float(m.group(2)) / len(text)  # every glyph here is one cell wide
        col, line = round(float(m.group(1)) / cell), int(m.group(3))
        for i, ch in enumerate(text):
            if col + i < width:
                rows[line][col + i] = ch
    return ["".join(r) for r in rows]


def segments(lines: list[str]) -> list[str]:
    """Each line cut at the panels' vertical borders: the text of one panel's line."""
    return [seg.rstrip() for line in lines for seg in re.split(f"[{BORDERS}]", line)]


def assert_no_label_ends_a_line(lines: list[str], right_of: str | None = None) -> None:
    """No panel's line ends with a label whose value went to the next line (``right_of``: only
    the panel right of that border, e.g. an info panel beside a form whose field labels sit
    above their fields)."""
    if right_of:
        lines = [line.split(right_of, 1)[1] for line in lines if right_of in line]
    for seg in segments(lines):
        for label in LABELS:
            assert not re.search(rf"(^|\s){re.escape(label)}$", seg), f"{label!r} ends a line: {seg!r}"


def assert_whole(lines: list[str], *items: str) -> None:
    """Every item is on the screen in one piece, on one line."""
    for item in items:
        assert any(item in line for line in lines), f"{item!r} is not whole on any line:\n" + "\n".join(lines)


def own_keys(app) -> list[str]:
    """'key description' of each key the screen itself shows in its footer (a binding with
    several keys shows its first)."""
    out = {}
    for a in app.screen.active_bindings.values():
        if a.binding.show and a.node is app.screen and a.binding.action not in out:
            out[a.binding.action] = f"{app.get_key_display(a.binding)} {a.binding.description}"
    return list(out.values())


def assert_keys_shown(seen: dict) -> None:
    """The top line has every screen's key, the bottom one this screen's own keys."""
    lines = seen["lines"]
    for item in NAV:
        assert item in lines[0]
    assert seen["keys"], "a screen with no keys of its own in the footer"
    for key in seen["keys"]:
        assert key in lines[-1], (key, lines[-1])


@pytest.fixture(scope="module")
def lab(tmp_path_factory, code_corpus, micro_lab):
    """A store with one finished experiment and a sweep of eight queued ones."""
    from ncalab.services import sweeps
    from ncalab.services.config import resolve_config
    from ncalab.services.runs import details
    from ncalab.store import RunStore

    home = copy_lab(micro_lab, tmp_path_factory.mktemp("lab") / "h")
    with RunStore(home) as store:
        (done,) = store.list_experiments()
        base = resolve_config("code", "tiny", None, [MICRO[i + 1] for i in range(0, len(MICRO), 2)], corpus=str(code_corpus))
        sweep = sweeps.create(store, base, ["transfer.reinit=none,attn", "stage2.lr=1e-3,3e-4"], [0, 1], name="what transfers")
        return {"home": home, "done": details(store, done.id), "sweep": sweeps.table(store, sweep["sweep_id"])}


def shown(app, key: str | None, size, ready=None, what: str = "the screen being ready", inspect=None) -> dict:
    """The screen after ``key``, once ``ready(app)`` holds (``what`` names that for a failure) and
    the app's workers are done, as lines, with its own keys and what ``inspect`` reads of it."""
    async def scenario():
        async with app.run_test(size=size) as pilot:
            if key:
                await pilot.press(key)
            if ready is not None:
                await until(pilot, lambda: ready(app), what, timeout=60)
            await settle(pilot)
            if key == "r":  # the finished experiment is the oldest: the last row
                table = app.screen.query_one("#table")
                await pilot.press("end")
                await until(pilot, lambda: app.screen.selected == table.rows[-1][1]
                            and "ppl scratch" in "".join(screen_lines(app)),
                            "the oldest (finished) experiment's details loading")
                await settle(pilot)
            return {"lines": screen_lines(app), "keys": own_keys(app), **(inspect(app) if inspect else {})}

    return asyncio.run(scenario())


@pytest.mark.parametrize("size", SIZES)
def test_runs_keeps_ids_statuses_and_results_whole(lab, size):
    d = lab["done"]
    app = NcalabApp(home=lab["home"], seed=7, autoplay=False)
    seen = shown(app, "r", size, ready=lambda a: a.screen.query_one("#table").row_count == 9,
                 what="the Runs table showing all nine experiments",
                 inspect=lambda a: {"titles": a.screen.query_one("#table").visible_titles()})
    assert_keys_shown(seen)
    lines = seen["lines"]
    row = next(line for line in lines if d["id"] in line and "completed" in line)
    for value in (f"{d['ppl_nca']:.2f}", f"{d['ppl_scratch']:.2f}", f"{d['gain']:+.3f}",
                  "-" if d["speedup"] is None else f"{d['speedup']:.2f}x"):  # none: NCA never reached scratch's final
        assert f" {value} " in row + " ", (value, row)
    queued = [line for line in lines if re.search(r"e-[0-9a-f]{8} +queued", line)]
    assert queued  # the sweep's members above it, each id and status whole
    assert set(seen["titles"]) >= {"id", "status", "nca", "scratch", "gain", "speedup"}
    assert_whole(lines, f"ppl nca {d['ppl_nca']:.3f}", f"ppl scratch {d['ppl_scratch']:.3f}",
                 f"gain {d['gain']:+.4f}", "speedup -" if d["speedup"] is None else f"speedup {d['speedup']:.3f}", f"seed {d['seed']}")
    border = next(i for i, line in enumerate(lines) if line.strip() and set(line.strip()) == {"▔"})
    assert_no_label_ends_a_line(lines[border + 1:])  # the details, under the table below 120 columns


@pytest.mark.parametrize("size", SIZES)
def test_sweeps_keeps_ids_statuses_and_results_whole(lab, size):
    from ncalab.display.tables import short_label

    tab = lab["sweep"]
    app = NcalabApp(home=lab["home"], seed=7, autoplay=False)
    seen = shown(app, "w", size, ready=lambda a: "setting" in "".join(screen_lines(a)),
                 what="the sweep's table on screen")
    assert_keys_shown(seen)
    lines = seen["lines"]
    assert re.search(rf"{tab['sweep_id']} +0/8 +8 queued", "\n".join(lines))
    assert_whole(lines, "setting", "seeds  nca  scratch  gain  speedup  won  status")
    for r in tab["rows"]:  # each setting's row: its label, seeds done and status on one line
        assert any(re.search(rf"{re.escape(short_label(r['setting']))} +0/2 .* 2 queued", line) for line in lines)
    assert_no_label_ends_a_line(lines)


@pytest.fixture(scope="module")
def study_home(tmp_path_factory, code_corpus):
    """A store of its own (Runs counts the lab's experiments) with a study of four queued members."""
    from ncalab.services import study
    from ncalab.services.config import resolve_config
    from ncalab.store import RunStore

    home = tmp_path_factory.mktemp("study") / "h"
    with RunStore(home) as store:
        base = resolve_config("code", "tiny", None, [MICRO[i + 1] for i in range(0, len(MICRO), 2)], corpus=str(code_corpus))
        made = study.declare(store, base, ["model.d_model=32,48"], [8192, 32768], study.parse_arms("nca", base, False),
                             [0, 1])
        return {"home": home, "study_id": made["study_id"]}


@pytest.mark.parametrize("size", SIZES)
def test_studies_keeps_ids_statuses_and_keys_whole(study_home, size):
    app = NcalabApp(home=study_home["home"], seed=7, autoplay=False)
    seen = shown(app, "i", size, ready=lambda a: "answers" in "".join(screen_lines(a)),
                 what="the study's grid and answers on screen")
    assert_keys_shown(seen)
    lines = seen["lines"]
    assert re.search(rf"{study_home['study_id']} +0/4 +4 queued", "\n".join(lines))
    assert_whole(lines, "2 sizes x 2 budgets x 2 arms x 2 seeds", "no points stored yet")
    assert_no_label_ends_a_line(lines)


@pytest.mark.parametrize("size", SIZES)
def test_explore_shows_the_band_its_share_and_its_keys(lab, size):
    app = NcalabApp(home=lab["home"], seed=7, autoplay=False)
    seen = shown(app, None, size, ready=lambda a: a.screen.batch is not None, what="Explore's first rule loading",
                 inspect=lambda a: {"seed": a.screen.seed, "score": a.screen.rule_score,
                                    "share": (a.screen.drawer.in_band_count, a.screen.drawer.scored)})
    assert_keys_shown(seen)
    lines, (inside, scored) = seen["lines"], seen["share"]
    assert_whole(lines, f"rule {seen['seed']}", f"score {seen['score']:.3f} (first 10 frames)", "in band 0.3-0.4",
                 "n draws: in band 0.3-0.4 (code)", "b: any rule",
                 f"{inside / scored:.0%} of {scored:,} random rules score in 0.3-0.4")
    assert_no_label_ends_a_line(lines)


@pytest.mark.parametrize("size", SIZES)
def test_launch_families_and_help_keep_labels_with_values(lab, size):
    app = NcalabApp(home=lab["home"], seed=7, autoplay=False)
    seen = shown(app, "l", size, ready=lambda a: "budget" in "".join(screen_lines(a)), what="Launch showing the budget")
    assert_keys_shown(seen)
    lines = seen["lines"]
    assert_whole(lines, "stage 1 budget: 1,000,000 NCA tokens", "stage 2 budget: 2,000,000 tokens,", "seed 0")
    assert_no_label_ends_a_line(lines, right_of="▊")

    app = NcalabApp(home=lab["home"], seed=7, autoplay=False, draw_seed=11)
    seen = shown(app, "f", size, ready=lambda a: isinstance(a.screen, GalleryScreen) and a.screen.batch is not None,
                 what="Families showing its rules")
    assert_keys_shown(seen)
    assert_no_label_ends_a_line(seen["lines"])

    app = NcalabApp(home=lab["home"], seed=7, autoplay=False)
    seen = shown(app, "question_mark", size, ready=lambda a: isinstance(a.screen, HelpScreen), what="Help opening")
    lines = seen["lines"]
    for item in NAV:
        assert item in lines[0]
    assert_whole(lines, "Everywhere (the top line):")


@pytest.mark.parametrize("size", SIZES)
def test_getting_started_shows_once_in_five_whole_lines(tmp_path, monkeypatch, size):
    from ncalab.tui.screens.help import GettingStartedScreen

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    plain = [re.sub(r"\[/?[a-z ]*\]", "", line) for line in GETTING_STARTED.splitlines()]
    assert len(plain) == 5

    async def first_screen():
        app = NcalabApp(home=tmp_path / "home", seed=7, autoplay=False, welcome=True)
        async with app.run_test(size=size) as pilot:
            await until(pilot, lambda: app.screen_stack[0].batch is not None, "Explore's first rule loading",
                        timeout=60)
            await settle(pilot)
            welcomed = isinstance(app.screen, GettingStartedScreen)
            lines = screen_lines(app)
            await pilot.press("escape")
            await until(pilot, lambda: not isinstance(app.screen, GettingStartedScreen), "escape closing the welcome")
            return welcomed, lines, type(app.screen).__name__

    welcomed, lines, after = asyncio.run(first_screen())
    assert welcomed and after == "ExploreScreen"
    assert_whole(lines, *plain)
    assert (tmp_path / "config" / "ncalab" / "welcomed").exists()  # where keys.toml lives, not in the run store
    assert not (tmp_path / "home").exists()  # looking creates no run store
    welcomed, _, _ = asyncio.run(first_screen())
    assert not welcomed  # once


def test_remapped_keys_show_in_the_top_line_and_the_footer(lab, tmp_path, monkeypatch):
    keys = tmp_path / "keys.toml"
    keys.write_text('[keys]\n"go.runs" = "g"\n"explore.new_rule" = "x"\n')
    monkeypatch.setenv("NCALAB_KEYS", str(keys))
    app = NcalabApp(home=lab["home"], seed=7, autoplay=False)
    lines = shown(app, None, (80, 24), ready=lambda a: a.screen.batch is not None,
                  what="Explore's first rule loading")["lines"]
    assert "g Runs" in lines[0] and "r Runs" not in lines[0]
    assert "x New rule" in lines[-1]
    assert_whole(lines, "x draws: in band 0.3-0.4")
