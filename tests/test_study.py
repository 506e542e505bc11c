"""`ncalab study`: a scaling study declared, run through the job queue, killed, resumed and
answered; bad grids refused in one line with nothing stored."""

import json
import os
import signal

import pytest

from conftest import MICRO, cli, cli_json, wait_until
from ncalab.experiment.budgets import LOSS
from ncalab.store import RunStore

# MICRO's settings (its stage-2 budget is replaced by the study's); sizes vary the width at one head count
GRID = ["--size", "model.d_model=32,48", "--budgets", "8192,32768", "--sources", "nca", "--no-matched-scale",
        "--seeds", "1"]


def _study(capsys, home, corpus, *args):
    return cli(capsys, "study", "--home", str(home), "--corpus", str(corpus), *MICRO, *args)


@pytest.mark.parametrize("args, message", [
    (["--size", "model.d_model=32", "--budgets", "8192,32768"], "at least 2 model sizes"),
    (["--size", "model.d_model=32,48", "--budgets", "32768"], "at least 2 stage-2 budgets"),
    (["--size", "model.d_model=32,48", "--budgets", "8192,-32768"], "must be a positive whole number"),
    (["--size", "model.d_model=32,48", "--budgets", "8192,32768", "--sources", "nca,nope"], "unknown stage-1 source"),
    (["--size", "stage2.lr=1e-3,2e-3", "--budgets", "8192,32768"], "takes model settings"),
    (["--size", "model.d_model=32,48", "--size", "model.n_head=2", "--budgets", "8192,32768"], "as many values"),
    (["--size", "model.d_model=32,48", "--budgets", "512,32768"], "too few for a stable phase"),
    (["--size", "model.d_model=32,48"], "needs stage-2 budgets"),
    (["--budgets", "8192,32768"], "needs model sizes"),
])
def test_bad_grids_get_one_line_and_store_nothing(tmp_path, capsys, code_corpus, args, message):
    home = tmp_path / "h"
    code, _, err = _study(capsys, home, code_corpus, "--detach", *args)
    assert code != 0 and message in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    if (home / "ncalab.db").exists():
        store = RunStore(home)
        assert store.list_sweeps() == [] and store.list_experiments() == []


def test_a_sweep_is_not_a_study_and_unknown_ids_are_one_line(tmp_path, capsys, code_corpus):
    home = tmp_path / "h"
    made = cli_json(capsys, "sweep", "--home", str(home), "--corpus", str(code_corpus), *MICRO,
                    "--grid", "stage2.lr=1e-3,2e-3", "--detach")
    cli(capsys, "sweep", "cancel", made["sweep_id"], "--home", str(home))
    for args, message in ((["show", made["sweep_id"]], "is a sweep, not a study"),
                          (["fit", "s-00000000"], "no sweep with id s-00000000"),
                          (["resume", "s-00000000"], "no sweep with id s-00000000")):
        code, _, err = cli(capsys, "study", *args, "--home", str(home))
        assert code != 0 and message in err and len(err.strip().splitlines()) == 1, err


def _job_pid(store, study_id):
    """A member's job pid once it is training with some loss logged."""
    for exp in store.experiments_of_sweep(study_id):
        for r in store.runs_of(exp.id):
            if r.status == "running" and store.metrics(r.id, "train_loss"):
                return store.get_experiment(exp.id).pid
    return None


@pytest.fixture(scope="module")
def micro_study(tmp_path_factory, code_corpus):
    """A micro study run through the job queue, one of its jobs killed with SIGKILL mid-training,
    resumed, and finished: once per module (the tests below only read it)."""
    import contextlib
    import io

    from ncalab.cli.main import main

    home = tmp_path_factory.mktemp("study") / "h"
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["study", "--home", str(home), "--corpus", str(code_corpus), *MICRO, "--detach", "--json",
                     *GRID]) == 0
    made = json.loads(out.getvalue().strip().splitlines()[-1])
    study_id, store = made["study_id"], RunStore(home)
    pid = wait_until(lambda: _job_pid(store, study_id), "a member training", timeout=180)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z",
               f"the killed job (pid {pid}) exiting", timeout=180)
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["study", "resume", study_id, "--home", str(home)]) == 0
    wait_until(lambda: all(e.status in ("completed", "failed") for e in store.experiments_of_sweep(study_id)),
               "the study's members ending", timeout=300)
    return {"home": home, "study_id": study_id, "made": made, "store": store}


# slow: the fixture runs a micro study through the queue (2 experiments, one killed, about 40 s); the fast
# suite keeps the bad grids, the Studies screen's snapshots and its layout with a queued study
@pytest.mark.slow
def test_a_micro_study_killed_and_resumed_stores_every_point_once(micro_study, tmp_path, capsys):
    home, study_id, store = micro_study["home"], micro_study["study_id"], micro_study["store"]
    assert len(micro_study["made"]["experiments"]) == 2  # one per size: the nca arm and its scratch baseline
    assert {e.status for e in store.experiments_of_sweep(study_id)} == {"completed"}
    grid = cli_json(capsys, "study", "show", study_id, "--home", str(home), "--json")
    assert grid["arms"] == ["scratch", "nca"] and len(grid["cells"]) == 2 * 2 * 2
    assert all(len(c["losses"]) == 1 and c["losses"][0] > 0 for c in grid["cells"])
    ns = [s["n"] for s in grid["sizes"]]
    assert ns[0] < ns[1]  # N is the non-embedding parameters: the wider model has more
    for exp in store.experiments_of_sweep(study_id):  # every budget stored once in each stage-2 run
        for r in store.runs_of(exp.id):
            if r.kind in ("nca", "scratch"):
                assert sorted(p.tokens for p in store.metrics(r.id, LOSS)) == [8192, 32768]
    # 2 sizes x 2 budgets is fewer grid points than the law's 5 parameters: said in one line, the
    # measured table shown, and no fitted number printed
    code, out, _ = cli(capsys, "study", "fit", study_id, "--home", str(home), "--at", "1.6e9,3e10")
    assert code == 0 and "4 grid points for 5 parameters" in out and "crossover at" not in out
    assert "predicted by the two laws" not in out
    fitted = cli_json(capsys, "study", "fit", study_id, "--home", str(home))
    assert all(a["reason"] and "law" not in a for a in fitted["arms"])
    # the report's study section: its grid, and why there are no answers yet
    made = cli_json(capsys, "report", study_id, "--home", str(home), "--out", str(tmp_path / "r.html"), "--no-frames")
    page = (tmp_path / "r.html").read_text()
    assert made["title"].startswith("study ") and "The scaling study" in page and "5 parameters" in page
    assert page.index("The scaling study") < page.index("The question and the answer")


@pytest.mark.slow  # the same micro study (its fixture)
def test_the_studies_screen_shows_the_grid_plot_and_answers(micro_study):
    import asyncio
    import re

    from conftest import plain_text, settle, until
    from ncalab.display.study import tokens
    from ncalab.services import study
    from ncalab.tui.app import NcalabApp
    from ncalab.tui.screens.studies import StudiesScreen

    study_id = micro_study["study_id"]
    grid = study.grid(micro_study["store"], study_id, reap_first=False)

    async def scenario():
        app = NcalabApp(home=micro_study["home"], autoplay=False)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.press("i")
            screen = app.screen
            assert isinstance(screen, StudiesScreen)
            view = screen.query_one("#study-view")
            await until(pilot, lambda: "bootstrap intervals" in plain_text(view), "the study's answers showing")
            assert [r["sweep_id"] for r in screen.studies] == [study_id]
            (row,) = screen.query_one("#study-list").rows
            assert row[:4] == (study_id, "2/2", "done", "2 sizes x 2 budgets x 2 arms x 1 seed")
            text = plain_text(view)
            # the grid: both arms at both sizes, both budgets, the losses the store holds
            assert "8/8 points complete" in " ".join(text.split()) and re.search(r"arm +N +D 8\.19e3 +D 3\.28e4", text)
            for arm in ("scratch", "nca"):
                for size in grid["sizes"]:
                    cells = sorted((c for c in grid["cells"] if c["arm"] == arm and c["n"] == size["n"]),
                                   key=lambda c: c["d"])
                    assert [len(c["losses"]) for c in cells] == [1, 1]
                    losses = " +".join(f"{c['losses'][0]:.4f}" for c in cells)
                    assert re.search(rf"{arm} +{re.escape(tokens(size['n']))} +{losses}", text), (arm, size, text)
            # the plot: the first arm, one line per size
            assert "scratch: held-out loss against stage-2 tokens D" in text and "(a: next arm)" in text
            assert all(f"N {tokens(s['n'])}" in text for s in grid["sizes"])
            # the answers: 4 points cannot fit 5 parameters, said in one line, no fitted number
            assert "bootstrap intervals from 200 resamples" in text
            assert "4 grid points for 5 parameters" in text and "crossover at" not in text
            fitted = screen.fitted[study_id]
            await pilot.press("a")
            assert "nca: held-out loss against stage-2 tokens D" in plain_text(view)
            await pilot.press("a")
            assert "scratch: held-out loss" in plain_text(view)
            # a refresh with the same points keeps the answers; m refits with the CLI's 1000
            await pilot.press("f5")
            await settle(pilot)
            assert screen.fitted[study_id] is fitted
            await pilot.press("m")
            await until(pilot, lambda: "bootstrap intervals from 1000 resamples" in plain_text(view),
                        "the answers refitted with 1000 resamples")
            assert "4 grid points for 5 parameters" in plain_text(view)

    asyncio.run(scenario())
