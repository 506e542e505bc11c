"""Memory: the chunked loss, per-stage peaks, the predicted footprint, a queue that counts
memory, and a job killed for memory that says so."""

import os
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch

from ncalab.config import ModelConfig
from ncalab.errors import NcalabError
from ncalab.planning import footprint
from ncalab.jobs import allocation, control, oom, queue
from ncalab.services.config import resolve_config
from ncalab.store import RunStore
from ncalab.train import headloss, memory
from ncalab.train.evaluate import loss_sum
from ncalab.train.model import build_model

GIB = 1 << 30


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(headloss, "CHUNK_BYTES", 64 * 4 * 300)  # 64 positions a chunk of a 300-token vocabulary


def _grads(model, chunked, inputs, targets):
    model.zero_grad()
    loss, n = loss_sum(model, inputs, targets, chunked)
    loss.backward()
    return loss.detach(), n, [p.grad.clone() for p in model.parameters()]


def test_the_chunked_loss_matches_the_full_logits(small_chunks):
    model = build_model(ModelConfig(n_layer=2, d_model=32, n_head=2), 300, 80, seed=0)
    assert headloss.splits_head(model) and headloss.chunk_positions(300) == 64
    x = torch.randint(0, 300, (3, 81), generator=torch.Generator().manual_seed(0))
    inputs, targets = x[:, :-1], x[:, 1:].clone()
    targets[0, :30] = -100  # ignored targets, across a chunk boundary
    full, n_full, g_full = _grads(model, False, inputs, targets)
    chunked, n, g = _grads(model, True, inputs, targets)
    assert n == n_full == 3 * 80 - 30
    assert torch.allclose(chunked, full, rtol=1e-5)
    for a, b in zip(g, g_full):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        assert torch.allclose(loss_sum(model, inputs, targets)[0], full, rtol=1e-5)


def test_wrapped_models_take_the_full_logits():
    model = build_model(ModelConfig(n_layer=1, d_model=16, n_head=2), 50, 8, seed=0)
    wrapper = torch.nn.Sequential(model)
    assert not headloss.splits_head(wrapper) and not headloss.splits_head(torch.nn.Linear(2, 2))


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="Linux resets the resident peak")
def test_the_peak_is_reset_per_stage_and_kept_for_the_process():
    memory.reset_peak()
    big = np.ones(200 << 17)  # 200 MiB touched
    stage_one = memory.resident_peak()
    del big
    memory.release()  # as between stages: the tuned heap (train/device.py) would otherwise keep it
    assert memory.reset_peak()
    assert memory.resident_peak() < stage_one - (150 << 20)
    assert memory.lifetime_peak() >= stage_one - (4 << 20)  # the kernel's counters are approximate
    points = memory.peak_points(torch.device("cpu"))
    assert set(points) == {"stage_peak_rss_bytes"} and points["stage_peak_rss_bytes"] > 0


def test_shape_key_remembered_peak_and_prediction(tmp_path):
    cfg = resolve_config("code", "tiny", None, [])
    other_seed = resolve_config("code", "tiny", None, ["stage2.lr=3e-4"], seed=5)
    wider = resolve_config("code", "tiny", None, ["model.d_model=256"])
    assert footprint.shape_key(cfg) == footprint.shape_key(other_seed) != footprint.shape_key(wider)
    predicted = footprint.predicted_peak(cfg)
    assert 0.6 * GIB < predicted < GIB  # the tiny experiment's job, measured just under 1 GiB
    assert footprint.predicted_peak(wider) > predicted
    store = RunStore(tmp_path / "h")
    assert footprint.expected_peak(store, cfg) == predicted
    footprint.remember(store, cfg, 0.7 * GIB)
    footprint.remember(store, other_seed, 0.5 * GIB)  # a smaller peak never lowers what is known
    assert footprint.expected_peak(store, cfg) == int(0.7 * GIB)


def test_memory_limit_bad_input(monkeypatch):
    assert allocation.parse_bytes("1.5G") == 1.5 * GIB and allocation.parse_bytes("800MiB") == 800 << 20
    for bad in ("lots", "-1G", "0"):
        with pytest.raises(NcalabError, match="NCALAB_MEMORY must be an amount of memory"):
            allocation.parse_bytes(bad)


def _sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


@pytest.fixture
def fake_jobs(monkeypatch):
    """queue.spawn starts a sleeping process that claims the experiment at once, as a job does."""
    procs = {}

    def spawn(store, exp_id):
        p = _sleeper()
        assert store.claim_experiment(exp_id, p.pid, socket.gethostname())
        procs[exp_id] = p
        return p.pid

    monkeypatch.setattr(queue, "spawn", spawn)
    yield procs
    for p in procs.values():
        p.kill()
        p.wait()


def _queued(store, n, sets=()):
    cfg = resolve_config("code", "tiny", None, list(sets))
    return cfg, [store.create_experiment("code", "tiny", seed, cfg.to_dict()).id for seed in range(n)]


def test_the_queue_starts_only_what_fits_in_memory(tmp_path, monkeypatch, fake_jobs):
    store = RunStore(tmp_path / "h")
    queue.set_max_jobs(store, 8)
    cfg, ids = _queued(store, 4)
    footprint.remember(store, cfg, 1 * GIB)  # a finished run of this shape peaked at 1 GiB
    monkeypatch.setenv("NCALAB_MEMORY", "2.5G")  # room for two, with the margin
    assert queue.schedule(store) == ids[:2]
    assert [store.get_experiment(i).status for i in ids] == ["running", "running", "queued", "queued"]
    assert queue.schedule(store) == []  # nothing ended: the others still wait
    store.finish_experiment(ids[0], "completed")  # one job ends and, as jobs do, schedules
    assert queue.schedule(store) == [ids[2]]
    fake_jobs[ids[1]].kill()  # another dies: reaped as lost, its memory freed
    fake_jobs[ids[1]].wait()
    assert queue.schedule(store) == [ids[3]]
    assert store.get_experiment(ids[1]).status == "lost"


def test_max_jobs_stays_an_upper_bound_and_a_lone_large_job_starts(tmp_path, monkeypatch, fake_jobs):
    store = RunStore(tmp_path / "h")
    queue.set_max_jobs(store, 1)
    cfg, ids = _queued(store, 2)
    monkeypatch.setenv("NCALAB_MEMORY", "100G")
    assert queue.schedule(store) == ids[:1]
    store.finish_experiment(ids[0], "completed")
    monkeypatch.setenv("NCALAB_MEMORY", "100M")  # smaller than any job: it starts alone, or never would
    assert queue.schedule(store) == ids[1:]
    monkeypatch.setenv("NCALAB_MEMORY", "a lot")
    store.create_experiment("code", "tiny", 9, cfg.to_dict())
    with pytest.raises(NcalabError, match="NCALAB_MEMORY"):
        queue.schedule(store)


def _claimed_sleeper(store):
    cfg = resolve_config("code", "tiny", None, [])
    exp = store.create_experiment("code", "tiny", 0, cfg.to_dict())
    run = store.create_run(exp.id, "stage1", cfg.to_dict(), 1000, None)
    p = _sleeper()
    assert store.claim_experiment(exp.id, p.pid, socket.gethostname())
    store.start_run(run.id, p.pid, socket.gethostname(), "cpu")
    return exp.id, run.id, p


@pytest.mark.parametrize("killed_for_memory", [True, False])
def test_a_job_killed_for_memory_fails_saying_so(tmp_path, monkeypatch, killed_for_memory):
    counter = tmp_path / "memory.events"
    counter.write_text("low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n")
    monkeypatch.setenv(oom.COUNTER_ENV, str(counter))
    store = RunStore(tmp_path / "h")
    exp_id, run_id, p = _claimed_sleeper(store)
    oom.record(store, exp_id, 1.25 * GIB)  # the job's last heartbeat
    if killed_for_memory:
        counter.write_text("low 0\nhigh 0\nmax 5\noom 2\noom_kill 2\n")
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert queue.reap(store) == [exp_id]
    exp = store.get_experiment(exp_id)
    if not killed_for_memory:
        assert exp.status == "lost" and "killed for memory" not in exp.error
        return
    assert exp.status == "failed" and exp.error.startswith("killed for memory")
    assert "1.25 GiB" in exp.error and f"ncalab runs resume {exp_id}" in exp.error and "\n" not in exp.error
    assert store.get_run(run_id).status == "failed" and store.get_run(run_id).error == exp.error
    control.requeue(store, exp_id)  # what `runs resume` does first: it continues
    assert store.get_experiment(exp_id).status == "queued"


def test_the_kill_counter_of_this_machine_is_found():
    path = oom.counter_file()
    if path is None:
        pytest.skip("nothing counts out-of-memory kills here")
    assert oom.kills(path) >= 0
    assert oom.kills(None) is None
