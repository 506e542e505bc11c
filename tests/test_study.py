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


@pytest.mark.slow  # about 40 s: two micro experiments, one killed; the fast suite keeps the bad-grid tests
def test_a_micro_study_killed_and_resumed_stores_every_point_once(tmp_path, capsys, code_corpus):
    home = tmp_path / "h"
    code, out, err = _study(capsys, home, code_corpus, "--detach", "--json", *GRID)
    assert code == 0, err
    made = json.loads(out)
    study_id, store = made["study_id"], RunStore(home)
    assert len(made["experiments"]) == 2  # one per size: the nca arm and its scratch baseline
    pid = wait_until(lambda: _job_pid(store, study_id), "a member training", timeout=180)
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z",
               f"the killed job (pid {pid}) exiting", timeout=180)
    assert cli_json(capsys, "study", "resume", study_id, "--home", str(home))["resumed"]

    def ended():
        return all(e.status in ("completed", "failed") for e in store.experiments_of_sweep(study_id))

    wait_until(ended, "the study's members ending", timeout=300)
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
    assert code == 0 and "4 grid points for 5 parameters" in out and "crossover at" not in out and "predicted by the two laws" not in out
    fitted = cli_json(capsys, "study", "fit", study_id, "--home", str(home))
    assert all(a["reason"] and "law" not in a for a in fitted["arms"])
    # the report's study section: its grid, and why there are no answers yet
    made = cli_json(capsys, "report", study_id, "--home", str(home), "--out", str(tmp_path / "r.html"), "--no-frames")
    page = (tmp_path / "r.html").read_text()
    assert made["title"].startswith("study ") and "The scaling study" in page and "5 parameters" in page
    assert page.index("The scaling study") < page.index("The question and the answer")
