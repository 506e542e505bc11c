"""`ncalab report` and the figure files: one self-contained HTML page per experiment, several
experiments or a sweep, made from the store alone and never writing to it; `runs plot`,
`sweep plot` and `nca sample` with --out; the page in a real (headless) browser."""

from __future__ import annotations

import hashlib
import io
import json
import re
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from browser import Browser, find_chromium
from conftest import cli, copy_lab, make_schema_one
from ncalab.services import report as R
from ncalab.store import RunStore



@pytest.fixture(scope="module")
def lab(tmp_path_factory, micro_lab):
    """The micro experiment with a downstream result; an experiment as an early version stored
    it (a summary of the first fields only, no runs); and a sweep of two settings, the second
    still running."""
    home = copy_lab(micro_lab, tmp_path_factory.mktemp("report") / "h")
    store = RunStore(home)
    exp = store.list_experiments()[0]
    summary = exp.summary
    summary["downstream"] = {"humaneval": {"1": {"nca": 0.05, "scratch": 0.0, "diff": 0.05, "ci": 0.04, "items": 20},
                                           "8": {"nca": 0.1, "scratch": 0.05, "diff": 0.05, "ci": 0.07, "items": 20}}}
    store.set_summary(exp.id, summary)
    old = store.create_experiment("code", "tiny", 1, {**exp.config, "seed": 1}, name="from an early version")
    store.set_summary(old.id, {k: summary[k] * (1.01 if k.startswith("ppl") else 1) if isinstance(summary[k], float)
                               else summary[k] for k in ("experiment_id", "preset", "scale", "seed", "ppl_scratch",
                                                         "ppl_nca", "gain", "speedup")})
    store.set_experiment_status(old.id, "completed")
    sweep = store.create_sweep({"preset": "code", "scale": "tiny", "base": exp.config,
                                "grid": {"transfer.lr_scale": [1.0, 0.5]}, "seeds": [0]}, "lr scale")
    con = sqlite3.connect(home / "ncalab.db")  # the finished experiment becomes the sweep's first member
    con.execute("UPDATE experiments SET sweep_id = ? WHERE id = ?", (sweep.id, exp.id))
    con.commit()
    con.close()
    cfg = json.loads(json.dumps(exp.config))
    cfg["transfer"]["lr_scale"] = 0.5
    running = store.create_experiment("code", "tiny", 0, cfg, name="transfer.lr_scale=0.5", sweep_id=sweep.id)
    store.set_experiment_status(running.id, "running")
    store.close()
    return SimpleNamespace(home=home, exp=exp.id, old=old.id, sweep=sweep.id, running=running.id,
                           gain=summary["gain"])


def _fingerprint(home: Path) -> dict:
    """Every file of the store, by time and content. A reader of a WAL database has SQLite make
    its shared-memory index (-shm) and an empty log (-wal) if they are missing: no data, so the
    log only counts when it holds something."""
    out = {}
    for p in sorted(home.rglob("*")):
        if p.is_file() and p.name != "ncalab.db-shm" and not (p.name == "ncalab.db-wal" and p.stat().st_size == 0):
            out[str(p.relative_to(home))] = (p.stat().st_mtime_ns, hashlib.sha256(p.read_bytes()).hexdigest())
    return out


def _self_contained(html: str) -> None:
    low = html.lower()
    assert "<script" not in low and "<link" not in low and "@import" not in low and "url(" not in low
    assert re.findall(r'(?:src|href)\s*=\s*"(?!data:)', html) == []  # every image inline


def test_the_report_of_an_experiment_answers_first_and_never_writes_to_the_store(lab, tmp_path, capsys):
    before = _fingerprint(lab.home)
    out = tmp_path / "report.html"
    code, stdout, err = cli(capsys, "report", lab.exp, "--out", out, "--home", lab.home)
    assert code == 0, err
    assert f"wrote {out}" in stdout.replace("\n", "")
    assert _fingerprint(lab.home) == before
    html = out.read_text()
    _self_contained(html)
    order = [html.index(h) for h in ("The question and the answer", "Validation curves", "Stage 1", "Compute",
                                     "Downstream", "Config")]
    assert order == sorted(order)
    assert f"{lab.gain:+.4f}" in html and "not met" in html and "one seed: no interval" in html
    assert "beats scratch on every seed" in html  # the rule, stated
    # curves, stage-1 loss, in context per frame, downstream; and the NCA rules as a PNG strip
    assert html.count("data:image/svg+xml;base64,") == 4 and html.count("data:image/png;base64,") == 1
    assert "humaneval" in html and "+0.050 ± 0.040" in html
    assert "<mark>model.n_layer</mark>" in html and "<mark>seed</mark>" not in html
    assert "Not finished" not in html


def test_the_strip_is_what_stage_1_kept_and_the_same_rules_drawn_again(lab):
    """Stage 1 keeps its first rules beside its model (the report reads them without starting
    the simulator); an experiment from before that has them drawn again: the same rules."""
    from ncalab.nca import strip

    with R.open_store(lab.home) as store:
        rep = R.gather(store, [lab.exp], frames=True)
    kept = strip.load(rep.members[0].stage1_model)
    assert kept is not None and [r["rule_seed"] for r in rep.strip] == [k["rule_seed"] for k in kept]
    drawn, why = R.strip_of(rep.members[0].config)
    assert why is None and len(drawn) == len(kept) == 4
    for k, d in zip(kept, drawn):
        assert (k["rule_seed"], k["band"], k["alphabet"]) == (d["rule_seed"], d["band"], d["alphabet"])
        assert k["score"] == pytest.approx(d["score"]) and (k["frames"] == d["frames"]).all()
    lo, hi = (float(x) for x in kept[0]["band"].split("-"))
    assert all(lo <= k["score"] <= hi for k in kept)  # rules of its band, as stage 1 filtered them


def test_experiments_that_differ_only_in_seed_are_one_setting_even_from_an_early_version(lab, tmp_path, capsys):
    out = tmp_path / "two.html"
    code, _, err = cli(capsys, "report", lab.exp, lab.old, "--out", out, "--home", lab.home, "--no-frames")
    assert code == 0, err
    html = out.read_text()
    assert "2 experiments" in html and "2/2" in html  # one row: both seeds done
    assert re.search(r"[+-]\d\.\d{4} \[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]", html)  # mean [± 2 SE]
    # and the gain paired by seed, as `sweep show` gives it (95% t-interval over the two seeds)
    assert "95% CI paired by seed" in html
    assert len(re.findall(r"\[[+-]\d\.\d{4}, [+-]\d\.\d{4}\]", html)) >= 2
    assert "2 of the 3 seeds the rule needs" in html
    code, _, err = cli(capsys, "report", lab.old, "--out", tmp_path / "old.html", "--home", lab.home, "--no-frames")
    assert code == 0, err  # no runs, no compute, no in-context figures: it says what it lacks
    old = (tmp_path / "old.html").read_text()
    assert "No validation point stored yet" in old and "No stage has logged its compute" in old


def test_the_report_of_a_sweep_still_running_says_so_and_shows_what_exists(lab, tmp_path, capsys):
    out = tmp_path / "sweep.html"
    code, stdout, err = cli(capsys, "report", lab.sweep, "--out", out, "--home", lab.home, "--no-frames")
    assert code == 0, err
    assert "not finished" in stdout
    html = out.read_text()
    _self_contained(html)
    assert "Not finished: 1 running of 2 experiments" in html
    assert "transfer.lr_scale=0.5" in html and "transfer.lr_scale=1.0" in html
    assert "no finished seed yet" in html and lab.running in html


def test_a_store_of_an_older_schema_is_read_without_upgrading_it(tmp_path, capsys):
    from ncalab.experiment.presets import resolve

    home = tmp_path / "h"
    store = RunStore(home)
    exp = store.create_experiment("code", "tiny", 0, resolve("code", "tiny").to_dict())
    store.close()
    make_schema_one(home / "ncalab.db")  # a schema-1 store, as ncalab 0.1 wrote it
    before = _fingerprint(home)
    code, _, err = cli(capsys, "report", exp.id, "--out", tmp_path / "r.html", "--home", home, "--no-frames")
    assert code == 0, err
    assert _fingerprint(home) == before
    assert "No answer yet" in (tmp_path / "r.html").read_text()


@pytest.mark.parametrize("args, message", [
    (["report", "e-00000000"], "no experiment with id e-00000000"),
    (["report", "s-00000000"], "no sweep with id s-00000000"),
    (["report", "{exp}", "--out", "{tmp}/no/such/folder/r.html"], "cannot write"),
    (["report", "{exp}", "--out", "{tmp}/r.pdf"], "one of .html"),
    (["report", "{exp}", "--out", "{tmp}/folder.html"], "it is a folder"),
    (["report", "{sweep}", "{exp}"], "one sweep or several experiments"),
    (["runs", "plot", "{exp}", "--out", "{tmp}/f.jpg"], "one of .png, .svg, .pdf"),
    (["runs", "plot", "e-00000000", "--out", "{tmp}/f.png"], "no experiment with id"),
    (["sweep", "plot", "{sweep}", "--out", "{tmp}/f.bmp"], "one of .png, .svg, .pdf"),
    (["nca", "sample", "--out", "{tmp}/r.webp"], "one of .png, .gif"),
])
def test_bad_input_is_one_line(lab, tmp_path, capsys, args, message):
    (tmp_path / "folder.html").mkdir()
    args = [a.format(exp=lab.exp, sweep=lab.sweep, tmp=tmp_path) for a in args]
    if args[0] != "nca":
        args += ["--home", str(lab.home)]
    code, _, err = cli(capsys, *args)
    assert code == 1 and message in err and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


# slow (forked processes); the fast suite keeps the page written in this process (above)
@pytest.mark.slow
def test_the_command_reads_and_draws_in_forked_processes_and_makes_the_same_page(lab, tmp_path):
    """`ncalab report` as a user runs it (one thread: the store is read and every other figure
    drawn in forked processes) writes the page the in-process path writes; its errors are one line."""
    import subprocess
    import sys

    from ncalab.display.report_html import write_report

    def ncalab(*args):
        return subprocess.run([sys.executable, "-m", "ncalab.cli.main", *map(str, args), "--home", str(lab.home)],
                              capture_output=True, text=True, timeout=300)

    for ident in (lab.exp, lab.sweep):
        done = ncalab("report", ident, "--out", tmp_path / "forked.html")
        assert done.returncode == 0, done.stderr
        with R.open_store(lab.home) as store:
            write_report(store, [ident], tmp_path / "here.html")
        forked, here = ((tmp_path / f).read_text() for f in ("forked.html", "here.html"))
        assert forked.count("data:image/svg+xml") >= 3

        def undated(page):  # when it was made, in the footer and (a sweep still running) the banner
            return re.sub(r"(Made by ncalab \S+ on|the store held at) [0-9: -]+", "", page)

        assert undated(forked) == undated(here)
    bad = ncalab("report", "e-00000000", "--out", tmp_path / "x.html")
    assert bad.returncode == 1 and "no experiment with id e-00000000" in bad.stderr, bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1, bad.stderr


def test_figure_files_in_every_format(lab, tmp_path, capsys):
    from PIL import Image

    magic = {"png": b"\x89PNG", "svg": b"<?xml", "pdf": b"%PDF"}
    for fmt, head in magic.items():
        out = tmp_path / f"fig.{fmt}"
        code, _, err = cli(capsys, "runs", "plot", lab.exp, "--out", out, "--home", lab.home)
        assert code == 0, err
        assert out.read_bytes().startswith(head)
    assert Image.open(tmp_path / "fig.png").size == (680, 480)  # 3.4 x 2.4 inches at 200 dpi: a paper column
    svg = (tmp_path / "fig.svg").read_text()
    assert "<text" not in svg  # text drawn as paths: the figure needs no font
    code, _, err = cli(capsys, "sweep", "plot", lab.sweep, "--out", tmp_path / "gain.svg", "--home", lab.home)
    assert code == 0, err
    code, _, err = cli(capsys, "nca", "sample", "--seed", "3", "--steps", "5", "--out", tmp_path / "r.png")
    assert code == 0, err
    strip = Image.open(tmp_path / "r.png")
    assert strip.size == (5 * 12 * 8 + 4 * 4, 12 * 8)  # five 12x12 frames of 8-pixel cells, 4 pixels apart
    code, _, err = cli(capsys, "nca", "sample", "--seed", "3", "--steps", "7", "--out", tmp_path / "r.gif")
    assert code == 0, err
    assert Image.open(tmp_path / "r.gif").n_frames == 7


def test_the_rule_of_the_sweeps():
    def s(gain, speedup=None):
        return SimpleNamespace(gain=gain, speedup=speedup, ppl_nca=90.0, ppl_scratch=91.0)

    assert R.verdict([s(0.02, 1.2), s(0.025, 1.3), s(0.03)])["met"]
    v = R.verdict([s(0.02), s(0.025), s(-0.001)])
    assert not v["met"] and "2 of 3 seeds" in v["why"]
    v = R.verdict([s(0.001), s(0.05), s(0.002)])  # wins everywhere, but the mean is within 2 SE of 0
    assert not v["met"] and "2 x SE" in v["why"]
    v = R.verdict([s(0.02), s(0.03)])
    assert not v["met"] and "2 of the 3" in v["why"]
    assert v["gain"]["lo"] == pytest.approx(0.025 - 2 * 0.005)
    assert R.verdict([])["why"] == "no finished seed yet"
    assert R.verdict([s(0.02, 1.5), s(0.03, None), s(0.04, 2.5)])["speedup"]["n"] == 2


def test_curves_over_seeds_take_the_mean_and_range_where_each_seed_has_points():
    x, mean, lo, hi = R.spread([([0, 10, 20], [3.0, 2.0, 1.0]), ([0, 10], [5.0, 4.0])])
    assert x == [0, 10, 20]
    assert mean == [4.0, 3.0, 1.0] and lo == [3.0, 2.0, 1.0] and hi == [5.0, 4.0, 1.0]  # a running seed: its start
    assert R.spread([([0, 1], [2.0, 1.0])])[2] is None  # one seed: no band


PROBE = """Promise.all([...document.images].map(i => i.decode().catch(() => null))).then(() => ({
  scrollWidth: document.documentElement.scrollWidth, width: innerWidth,
  height: document.documentElement.scrollHeight,
  figures: [...document.querySelectorAll('figure img')].map(i => {
    const r = i.getBoundingClientRect();
    return [r.left + scrollX, r.top + scrollY, r.width, r.height]; })}))"""


@pytest.mark.skipif(find_chromium() is None, reason="no chromium on this machine (Debian: apt-get install chromium); "
                                                   "CI installs it")
# slow (Chromium); the fast suite keeps the page's content and its self-containedness (above)
@pytest.mark.slow
def test_the_report_in_a_real_browser_at_desktop_and_phone_sizes(lab, tmp_path, capsys):
    from PIL import Image

    pages = {"experiment": [lab.exp], "sweep": [lab.sweep]}
    for name, ids in pages.items():
        assert cli(capsys, "report", *ids, "--out", tmp_path / f"{name}.html", "--home", lab.home)[0] == 0
    with Browser(find_chromium()) as browser:
        for name in pages:
            for width, height, mobile in ((1280, 800, False), (390, 844, True)):
                session = browser.open(tmp_path / f"{name}.html", width, height, mobile)
                page = browser.evaluate(session, PROBE)
                assert page["scrollWidth"] <= page["width"] == width, f"{name} scrolls sideways at {width} px"
                shot = Image.open(io.BytesIO(browser.screenshot(session, width, page["height"]))).convert("RGB")
                shot.save(tmp_path / f"{name}-{width}.png")
                assert len(page["figures"]) >= 3
                for x, y, w, h in page["figures"]:
                    assert w > 50 and h > 50 and x + w <= width + 0.5
                    area = shot.crop((int(x), int(y), int(x + w), int(y + h)))
                    assert len(area.getcolors(maxcolors=1 << 16) or range(1 << 16)) > 2, f"a blank figure in {name}"
        assert browser.complaints() == []  # no console message, exception, refused load or CSP report


def test_the_runs_and_sweeps_screens_write_the_selected_report(lab, tmp_path, monkeypatch):
    import asyncio

    from conftest import until
    from ncalab.tui.app import NcalabApp

    home = copy_lab(lab.home, tmp_path / "h")  # the app marks jobs it finds dead as lost: a copy of its own
    monkeypatch.chdir(tmp_path)

    def notified(app, text):
        return any(text in str(n.message) for n in app._notifications)

    async def scenario():
        app = NcalabApp(home=home)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("r")
            await until(pilot, lambda: app.screen.selected, "the Runs table selecting an experiment")
            selected = app.screen.selected
            await pilot.press("p")
            await until(pilot, lambda: notified(app, f"report-{selected}.html"), "the report's message", 120)
            await pilot.press("w")
            await until(pilot, lambda: app.screen.sweeps, "the Sweeps list filling")
            await pilot.press("p")
            await until(pilot, lambda: notified(app, f"report-{lab.sweep}.html"), "the sweep report's message", 120)
            assert notified(app, "not finished")

    asyncio.run(scenario())
    assert "The question and the answer" in (tmp_path / f"report-{lab.sweep}.html").read_text()
    assert len(list(tmp_path.glob("report-e-*.html"))) == 1
