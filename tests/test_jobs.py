"""Background jobs with real processes and a real store: detach, kill -9, lost, cancel,
resume, the queue, crashes."""

import json
import os
import signal

import pytest

from conftest import MICRO, cli_json, make_schema_one, wait_until
from ncalab.cli.main import main
from ncalab.store import SCHEMA_VERSION, RunStore

# Long enough to catch a job mid-stage (stage 1 is caught once it has logged a loss; the whole
# experiment is twice its tokens), short enough for CI (a few seconds a stage).
SLOW = [a for a in MICRO] + ["--set", "stage1.tokens=65536", "--set", "stage1.eval_every=16384"]


def detach(capsys, home, corpus, *extra, budget=SLOW):
    """Queue an experiment (SLOW by default: a test that must catch it mid-stage has time to)."""
    return cli_json(capsys, "run", "--corpus", str(corpus), "--home", str(home), "--detach", *budget, *extra)["experiment_id"]


def running_pid(store, exp_id):
    """The job's pid once it trains a stage with some tokens logged."""
    for r in store.runs_of(exp_id):
        if r.status == "running" and store.metrics(r.id, "train_loss"):
            return store.get_experiment(exp_id).pid, r
    return None


def one_after_the_other(store, a, b):
    """Wait for two queued experiments to end, checking they were never running together."""
    seen_both = False

    def done():
        nonlocal seen_both
        st = [store.get_experiment(x).status for x in (a, b)]
        seen_both |= st == ["running", "running"]
        return all(s in ("completed", "failed") for s in st)

    wait_until(done, "both queued experiments ending", timeout=300)
    assert not seen_both
    return store.get_experiment(a), store.get_experiment(b)


def check_curves(store, exp_id):
    for r in store.runs_of(exp_id):
        assert r.status == "completed"
        tokens, _ = store.curve(r.id, "train_loss")
        steps = sorted({p.step for p in store.metrics(r.id, "train_loss")})
        assert tokens == sorted(set(tokens)), "duplicated or unordered points"
        assert steps == list(range(1, len(steps) + 1)), "a gap in the training curve"
        vt, _ = store.curve(r.id, "val_loss")
        assert vt == sorted(set(vt)) and vt[0] == 0 and vt[-1] == tokens[-1]


@pytest.mark.slow
def test_kill_9_marks_lost_and_resume_completes(tmp_path, capsys, code_corpus):
    home = tmp_path / "h"
    exp_id = detach(capsys, home, code_corpus)
    store = RunStore(home)
    pid, run = wait_until(lambda: running_pid(store, exp_id), "the job training a stage with loss logged", timeout=180)
    d = cli_json(capsys, "runs", "show", exp_id, "--home", str(home))
    assert d["status"] == "running" and d["pid"] == pid and any(r["pid"] == pid for r in d["runs"])
    os.kill(pid, signal.SIGKILL)

    def gone():
        return not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z"

    wait_until(gone, f"the killed job (pid {pid}) exiting", timeout=180)
    rows = cli_json(capsys, "runs", "list", "--home", str(home))["experiments"]
    assert rows[0]["status"] == "lost"
    assert store.get_run(run.id).status == "lost"
    assert cli_json(capsys, "runs", "resume", exp_id, "--home", str(home))["status"] in ("running", "queued")

    def ended():
        exp = store.get_experiment(exp_id)
        return exp if exp.status in ("completed", "failed") else None

    assert wait_until(ended, "the resumed experiment ending", timeout=180).status == "completed"
    check_curves(store, exp_id)
    assert store.get_experiment(exp_id).summary["ppl_nca"] > 1


@pytest.mark.slow
def test_cancel_checkpoints_and_resume_completes(tmp_path, capsys, code_corpus):
    home = tmp_path / "h"
    exp_id = detach(capsys, home, code_corpus)
    store = RunStore(home)
    _, run = wait_until(lambda: running_pid(store, exp_id), "the job training a stage with loss logged", timeout=180)
    assert cli_json(capsys, "runs", "cancel", exp_id, "--home", str(home))["status"] == "cancelled"
    run = store.get_run(run.id)
    assert run.status == "cancelled"
    assert (store.run_dir(run) / "checkpoints" / "last" / "trainer_state.json").exists()
    code = main(["runs", "cancel", exp_id, "--home", str(home)])
    assert code != 0 and "not running" in capsys.readouterr().err
    cli_json(capsys, "runs", "resume", exp_id, "--home", str(home))
    wait_until(lambda: store.get_experiment(exp_id).status in ("completed", "failed"), "the resumed experiment ending",
               timeout=180)
    assert store.get_experiment(exp_id).status == "completed"
    check_curves(store, exp_id)
    code = main(["runs", "resume", exp_id, "--home", str(home)])
    assert code != 0 and "already completed" in capsys.readouterr().err


@pytest.mark.slow
def test_queue_runs_one_at_a_time_and_starts_the_next(tmp_path, capsys, code_corpus):
    home = tmp_path / "h"
    # MICRO budgets: a job's start-up alone (seconds) keeps a's slot taken while b is queued
    a = detach(capsys, home, code_corpus, "--max-jobs", "1", budget=MICRO)
    b = detach(capsys, home, code_corpus, "--seed", "1", budget=MICRO)
    store = RunStore(home)
    assert store.get_experiment(b).status == "queued"
    ea, eb = one_after_the_other(store, a, b)
    assert ea.status == eb.status == "completed" and eb.started_at >= ea.finished_at - 1  # b started when a's slot freed


@pytest.mark.slow
def test_the_queue_waits_for_memory_and_starts_the_next_when_one_ends(tmp_path, capsys, code_corpus, monkeypatch):
    monkeypatch.setenv("NCALAB_MEMORY", "1G")  # room for one micro job (about 0.6 GiB expected), not two
    home = tmp_path / "h"
    a = detach(capsys, home, code_corpus, "--max-jobs", "4", budget=MICRO)
    b = detach(capsys, home, code_corpus, "--seed", "1", budget=MICRO)
    store = RunStore(home)
    # a's job claims it as it starts (until then it reads queued); b must not start meanwhile
    wait_until(lambda: store.get_experiment(a).status == "running", "the first job claiming its experiment", timeout=60)
    assert store.get_experiment(b).status == "queued"
    ea, eb = one_after_the_other(store, a, b)
    assert ea.status == eb.status == "completed" and eb.started_at >= ea.finished_at - 1


@pytest.mark.slow
def test_a_job_killed_for_memory_is_failed_saying_so_and_resumes(tmp_path, capsys, code_corpus, monkeypatch):
    counter = tmp_path / "memory.events"  # stands for the cgroup's: the job reads it at every heartbeat
    counter.write_text("oom 0\noom_kill 0\n")
    monkeypatch.setenv("NCALAB_OOM_COUNTER", str(counter))
    home = tmp_path / "h"
    exp_id = detach(capsys, home, code_corpus)
    store = RunStore(home)
    pid, run = wait_until(lambda: running_pid(store, exp_id), "the job training a stage with loss logged", timeout=180)
    wait_until(lambda: store.get_meta(f"memory:{exp_id}"), "the job's first memory heartbeat", timeout=60)
    counter.write_text("oom 1\noom_kill 1\n")  # what the kernel's out-of-memory killer leaves
    os.kill(pid, signal.SIGKILL)
    wait_until(lambda: not os.path.exists(f"/proc/{pid}") or open(f"/proc/{pid}/stat").read().split(")")[-1].split()[0] == "Z",
               f"the killed job (pid {pid}) exiting", timeout=180)
    row = cli_json(capsys, "runs", "list", "--home", str(home))["experiments"][0]
    assert row["status"] == "failed"
    d = cli_json(capsys, "runs", "show", exp_id, "--home", str(home))
    assert d["runs"] and any(r["status"] == "failed" and r["error"].startswith("killed for memory") for r in d["runs"])
    assert "GiB resident" in store.get_experiment(exp_id).error
    assert cli_json(capsys, "runs", "resume", exp_id, "--home", str(home))["status"] in ("running", "queued")
    wait_until(lambda: store.get_experiment(exp_id).status in ("completed", "failed"), "the resumed experiment ending",
               timeout=180)
    assert store.get_experiment(exp_id).status == "completed"


@pytest.mark.slow
def test_a_crash_mid_run_is_failed_with_the_error(tmp_path, capsys, code_corpus):
    home = tmp_path / "h"
    # stage 2 windows longer than the corpus: fails after stage 1, inside the job
    exp_id = detach(capsys, home, code_corpus, "--set", "stage2.seq_len=4000000", budget=MICRO)
    store = RunStore(home)
    wait_until(lambda: store.get_experiment(exp_id).status in ("failed", "completed"), "the experiment ending",
               timeout=180)
    exp = store.get_experiment(exp_id)
    assert exp.status == "failed" and exp.error
    d = cli_json(capsys, "runs", "show", exp_id, "--home", str(home))
    assert any(r["status"] == "failed" and r["error"] for r in d["runs"])


# slow (end to end); the fast suite keeps the queue's store upgrade and test_sweeps' cancel of queued
# members (no job process)
@pytest.mark.slow
def test_cancel_a_queued_experiment_and_bad_ids(tmp_path, capsys, code_corpus):
    home = tmp_path / "h"
    a = detach(capsys, home, code_corpus, "--max-jobs", "1")
    b = detach(capsys, home, code_corpus, "--seed", "2")
    assert cli_json(capsys, "runs", "cancel", b, "--home", str(home))["status"] == "cancelled"
    assert cli_json(capsys, "runs", "cancel", a, "--home", str(home))["status"] == "cancelled"
    for args, msg in ((["runs", "cancel", "e-00000000"], "no experiment"),
                      (["runs", "resume", "e-00000000"], "no experiment"),
                      (["run", "--detach", "--max-jobs", "0"], "at least 1")):
        code = main(args + ["--home", str(home)])
        err = capsys.readouterr().err
        assert code != 0 and msg in err and "Traceback" not in err


def test_old_store_is_upgraded_in_place(tmp_path):
    home = tmp_path / "h"
    store = RunStore(home)
    exp = store.create_experiment("code", "tiny", 0, {"a": 1})
    store.close()
    make_schema_one(home / "ncalab.db")  # a schema-1 store, as ncalab 0.1 wrote it
    again = RunStore(home)
    assert again.get_experiment(exp.id).config == {"a": 1}
    assert again.claim_experiment(exp.id, 123, "host")
    run = again.create_run(exp.id, "stage1", {}, 10, reuse_key="k")  # schema 3: reuse keys and sweeps
    assert again.get_run(run.id).reuse_key == "k"
    assert again.get_sweep(again.create_sweep({"grid": {}}).id).spec == {"grid": {}}
    assert again.get_meta("schema_version") == str(SCHEMA_VERSION)


def test_the_governors_share_reaches_the_thread_that_trains(tmp_path, monkeypatch):
    """torch and numba keep thread counts per calling thread: the governor runs in a thread of
    its own, so a count it set there never reached training (a job started alone kept every
    core when a second job started beside it). It asks instead, and the loop takes it."""
    import threading

    import numba
    import torch

    from conftest import tiny_nca_trainer
    from ncalab.jobs import allocation
    from ncalab.train import device

    before = torch.get_num_threads()
    try:
        device.set_threads(2)
        monkeypatch.setattr(allocation, "threads_for", lambda store, nproc=1, starting=False: 1)  # a second job started
        governor = allocation.ThreadGovernor(tmp_path)
        t = threading.Thread(target=governor.adjust, args=(None,))
        t.start()
        t.join()
        assert torch.get_num_threads() == 2  # not taken yet: asked from another thread
        trainer, _ = tiny_nca_trainer(None, steps=2)
        trainer.run()
        assert torch.get_num_threads() == 1 and numba.get_num_threads() == 1  # both, in the training thread
    finally:
        device.request_threads(0)
        device.set_threads(before)


def test_jobs_of_every_store_on_the_machine_share_its_cores(tmp_path):
    """The share is the machine's: a job of another store (another folder) counts, and the
    entry of a job killed with -9 is dropped at the next count."""
    import subprocess
    import sys
    from types import SimpleNamespace

    from ncalab.jobs import machine
    from ncalab.jobs.allocation import cores, threads_for

    here = SimpleNamespace(home=tmp_path / "a", list_experiments=lambda status=None: [])  # nothing runs in this store
    assert machine.consumers() == 0 and threads_for(here, starting=True) == cores()
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])  # a job of another store
    try:
        machine.register(other.pid)
        assert machine.consumers() == 1
        assert threads_for(here, starting=True) == max(1, cores() // 2)
        other.kill()
        other.wait()
        assert machine.consumers() == 0 and not list(machine.folder().glob("*.json"))
    finally:
        other.kill()
        other.wait()
    # an entry whose process id now belongs to another process (started later) is not counted
    machine.register()
    entry = next(machine.folder().glob("*.json"))
    info = json.loads(entry.read_text())
    assert machine.consumers() == 1
    entry.write_text(json.dumps({**info, "started": info["started"] - 1000}))
    assert machine.consumers() == 0 and not entry.exists()
