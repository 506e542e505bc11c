"""Several processes: DDP and FSDP2 under torchrun on CPUs (gloo) train the model one process
trains, a multi-process experiment completes and resumes after kill -9, a sharded run
continues on another number of processes, and submitit's local executor requeues a job at
its time limit or on preemption. Real processes throughout: nothing of torch.distributed or
submitit is mocked (one test stands in for the job's entry point, to land a requeue inside a
checkpoint save every time instead of by chance)."""

import os
import signal
import subprocess
import sys
from pathlib import Path

import psutil
import pytest
import torch
from transformers import AutoModelForCausalLM

from conftest import MICRO, cli_json, wait_until
from ncalab.cli.main import main
from ncalab.store import RunStore

CHECK = Path(__file__).parent / "dist" / "train_check.py"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
pytestmark = [pytest.mark.slow, pytest.mark.all_cores]


def _torchrun(*args, n=2):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={n}", str(CHECK), *args]
    subprocess.run(cmd, env=ENV, check=True, capture_output=True, timeout=600)


def _single(*args):
    subprocess.run([sys.executable, str(CHECK), *args], env=ENV, check=True, capture_output=True, timeout=600)


def _max_diff(a, b):
    return max(float((a["state"][k] - b["state"][k]).abs().max()) for k in a["state"])


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """One process, 8 micro-steps of one sequence: the reference for the same global batch."""
    out = tmp_path_factory.mktemp("dist") / "one.pt"
    _single(str(out), "--micro", "1")
    return torch.load(out)


@pytest.mark.parametrize("parallel", ["ddp", "fsdp"])
def test_two_processes_train_the_model_one_process_trains(tmp_path, one_process, parallel):
    out = tmp_path / f"{parallel}.pt"
    _torchrun(str(out), "--parallel", parallel)
    two = torch.load(out)
    assert two["tokens"] == one_process["tokens"]  # the global batch, counted once
    assert two["losses"] == pytest.approx(one_process["losses"], abs=1e-5)
    assert _max_diff(one_process, two) < 1e-4  # float tolerance (reductions in another order)


def test_two_nodes_shard_within_a_node_and_train_the_model_one_process_trains(tmp_path, one_process):
    """Two single-process "nodes" (two torchrun launchers on this machine): FSDP2 builds the
    hybrid mesh (replicate across nodes, shard within one) and trains the same model."""
    out = tmp_path / "hsdp.pt"
    port = str(29500 + os.getpid() % 1000)
    procs = [subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--node-rank", str(r),
                               "--nproc-per-node", "1", "--master-addr", "127.0.0.1", "--master-port", port, str(CHECK),
                               str(out), "--parallel", "fsdp", "--expect-hybrid"], env=ENV,
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for r in (0, 1)]
    for p in procs:
        assert p.wait(timeout=600) == 0, p.stderr.read().decode()[-2000:]
    two = torch.load(out)
    assert two["losses"] == pytest.approx(one_process["losses"], abs=1e-5)
    assert _max_diff(one_process, two) < 1e-4


def test_a_sharded_run_continues_the_same_stream_on_one_process(tmp_path, one_process):
    ckpt = tmp_path / "ckpt"
    _torchrun(str(tmp_path / "first.pt"), "--parallel", "fsdp", "--ckpt", str(ckpt), "--stop-at", "2")
    assert (ckpt / "last" / "dcp").is_dir()
    # the checkpoint carries a full model too, loadable by transformers
    AutoModelForCausalLM.from_pretrained(ckpt / "last")
    _single(str(tmp_path / "rest.pt"), "--ckpt", str(ckpt), "--resume", "--micro", "2")
    rest = torch.load(tmp_path / "rest.pt")
    assert rest["losses"] == pytest.approx(one_process["losses"][2:], abs=1e-5)
    assert _max_diff(one_process, rest) < 1e-4


def test_a_two_process_experiment_completes_and_survives_kill_9(tmp_path, capsys, code_corpus):
    home = tmp_path / "h"
    slow = [*MICRO, "--set", "stage1.tokens=49152", "--set", "stage1.eval_every=12288",  # caught at 12 of 48 steps
            "--set", "stage1.icl_sequences=0"]
    exp_id = cli_json(capsys, "run", "--corpus", str(code_corpus), "--home", str(home), "--nproc", "2", "--detach",
                       *slow)["experiment_id"]
    store = RunStore(home)

    def training():
        for r in store.runs_of(exp_id):
            if r.kind == "stage1" and r.status == "running" and len(store.metrics(r.id, "train_loss")) >= 8:
                return r
        return None

    wait_until(training, "stage 1 training on two processes (8 losses logged)", timeout=600, poll=0.5)
    launcher = psutil.Process(store.get_experiment(exp_id).pid)  # torchrun
    workers = launcher.children(recursive=True)
    assert len([w for w in workers if "ncalab.cli.job" in " ".join(w.cmdline())]) == 2
    os.kill(workers[-1].pid, signal.SIGKILL)  # one process dies: the whole job ends
    wait_until(lambda: cli_json(capsys, "runs", "show", exp_id, "--home", str(home))["status"] == "lost",
               "the experiment marked lost after kill -9", timeout=600, poll=0.5)
    assert cli_json(capsys, "runs", "resume", exp_id, "--home", str(home))["status"] in ("running", "queued")
    wait_until(lambda: store.get_experiment(exp_id).status in ("completed", "failed"), "the resumed experiment ending",
               timeout=600, poll=0.5)
    assert store.get_experiment(exp_id).status == "completed", store.get_experiment(exp_id).error
    for r in store.runs_of(exp_id):
        tokens = [p.tokens for p in store.metrics(r.id, "train_loss")]
        assert tokens == sorted(set(tokens)) and tokens, r.kind  # strictly increasing: no duplicate after resume
        model_dir = store.run_dir(r) / "model"
        AutoModelForCausalLM.from_pretrained(model_dir)  # the full model, written by the main process
    cfg = store.get_experiment(exp_id).config
    assert cfg["stage1"]["stream"] == "indexed" and cfg["runtime"]["nproc"] == 2


def test_submitit_requeues_a_signalled_job_and_it_continues_from_its_checkpoint(tmp_path, capsys, code_corpus):
    """Two tasks under submitit's local executor. Slurm sends the job the same signal (USR2,
    submitit's default) shortly before its time limit and on preemption; here it is sent once
    the first stage has checkpointed, so the test does not depend on how fast this machine is.
    Checkpoints are written at almost every step, so the signal often lands inside one (DCP
    then turns submitit's exit into its own error). The job is requeued, resumes from that
    checkpoint, and the store shows one experiment, completed, with a curve that repeats nothing."""
    pytest.importorskip("submitit")
    from ncalab.train import checkpoint

    home = tmp_path / "h"
    long = [*MICRO, "--set", "stage1.tokens=32768", "--set", "stage1.eval_every=8192", "--set", "stage1.icl_sequences=0",
            "--set", "stage2.tokens=16384",
            "--set", "runtime.checkpoint_minutes=0.002"]
    exp_id = cli_json(capsys, "run", "--corpus", str(code_corpus), "--home", str(home), "--executor", "submitit-local",
                       "--nproc", "2", "--time", "30", *long)["experiment_id"]
    store = RunStore(home)

    def logs():
        return "\n".join(f"== {f.name}\n{f.read_text(errors='replace')[-3000:]}" for f in sorted((home / "slurm").glob("*_log.*")))

    def stage1_checkpointed():
        runs = [r for r in store.runs_of(exp_id) if r.kind == "stage1"]
        return runs and checkpoint.find(store.run_dir(runs[0]) / "checkpoints" / "last")

    wait_until(stage1_checkpointed, "a stage-1 checkpoint", timeout=600, poll=0.5, why=logs)
    tasks = [p for p in psutil.process_iter(["cmdline"])
             if "submitit.core._submit" in " ".join(p.info["cmdline"] or []) and str(home) in " ".join(p.info["cmdline"])]
    assert len(tasks) == 2
    for p in tasks:
        p.send_signal(signal.SIGUSR2)
    wait_until(lambda: store.get_experiment(exp_id).status in ("completed", "failed", "lost", "cancelled"),
               "the requeued job ending", timeout=400, poll=0.5, why=logs)
    assert store.get_experiment(exp_id).status == "completed", store.get_experiment(exp_id).error
    assert len(store.list_experiments()) == 1
    text = logs()
    assert "requeued (time limit or preemption)" in text
    assert "stage1: resuming from step" in text and "resuming from step 0 " not in text
    stage1 = next(r for r in store.runs_of(exp_id) if r.kind == "stage1")
    tokens = [p.tokens for p in store.metrics(stage1.id, "train_loss")]
    assert tokens == sorted(set(tokens)) and tokens


@pytest.mark.parametrize("requeued", [True, False])
def test_a_requeue_signal_that_lands_inside_a_checkpoint_save_still_requeues(monkeypatch, requeued):
    """DCP catches every exception of a save, submitit's exit included, and raises its own
    (a BaseException). Whatever surfaces once the requeue hook ran, the task exits with the code
    submitit's local controller restarts on; an error without a requeue stays that error."""
    submitit = pytest.importorskip("submitit")
    from unittest import mock

    from submitit.local.local import LOCAL_REQUEUE_RETURN_CODE
    from torch.distributed.checkpoint.api import CheckpointException

    from ncalab.cli import job
    from ncalab.jobs import slurm

    task = {"SUBMITIT_EXECUTOR": "local", "SUBMITIT_LOCAL_JOB_ID": "1", "SUBMITIT_LOCAL_NTASKS": "1", "SUBMITIT_LOCAL_JOB_NUM_NODES": "1",
            "SUBMITIT_LOCAL_NODEID": "0", "SUBMITIT_LOCAL_GLOBALID": "0", "SUBMITIT_LOCAL_LOCALID": "0"}

    def signalled_inside_a_save(argv):
        if requeued:
            job_ = slurm.SlurmJob("h", "e")
            assert isinstance(job_.checkpoint(), submitit.helpers.DelayedSubmission)  # what submitit's handler calls
        raise CheckpointException("save failed", {0: SystemExit(LOCAL_REQUEUE_RETURN_CODE)})

    monkeypatch.setattr(job, "main", signalled_inside_a_save)
    try:
        with mock.patch.dict(os.environ, task):  # the task's environment, and what it exports, go away after
            if requeued:
                with pytest.raises(SystemExit) as exited:
                    slurm.SlurmJob("h", "e")()
                assert exited.value.code == LOCAL_REQUEUE_RETURN_CODE
            else:
                with pytest.raises(CheckpointException):
                    slurm.SlurmJob("h", "e")()
    finally:
        slurm.REQUEUE.clear()


@pytest.mark.parametrize("args, message", [
    (["--nproc", "4"], "needs 4 CPU cores"),
    (["--executor", "slurm"], "sbatch on PATH"),
    (["--set", "runtime.parallel=fsdp"], "FSDP shards the model"),
    (["--nproc", "2", "--set", "stage1.micro_batch_size=3"], "does not divide"),
])
def test_bad_scale_out_input_is_one_line_and_stores_nothing(tmp_path, capsys, args, message):
    home = tmp_path / "h"
    code = main(["run", "--home", str(home), *args])
    err = capsys.readouterr().err
    assert code != 0 and message in err and "Traceback" not in err
    assert not (home / "ncalab.db").exists() or RunStore(home).list_experiments() == []
