"""The run store against both its databases, a real SQLite file and a real PostgreSQL server
(tests/pg.py starts one): round trips, locks, concurrent processes and claims, schema guards and
upgrades. Every test here runs once per back end (the autouse `backend` fixture)."""

from __future__ import annotations

import math
import multiprocessing as mp
import sqlite3
import time
from types import SimpleNamespace

import pytest
from conftest import Writes, metric_points, processes, writers
from sqlalchemy import select, text

import ncalab
from ncalab.errors import NcalabError
from ncalab.store import (
    SCHEMA_VERSION,
    STATUSES,
    FollowerStore,
    RunStore,
    StoreReader,
    StoreWriter,
    default_home,
)
from ncalab.store.connection import StoreConnection
from ncalab.store.schema import TABLES
from ncalab.store.store import DB_NAME


@pytest.fixture(autouse=True)
def backend(store_backend):
    """SQLite, then PostgreSQL (conftest's store_backend): None, or the database's URL."""
    return store_backend


def _sql(home, *statements: str, **params) -> None:
    """Raw statements in one transaction through the store's own write path (either database)."""
    with RunStore(home) as s, s._write() as session:
        for statement in statements:
            session.execute(text(statement), params)


@pytest.fixture
def store(tmp_path):
    s = RunStore(tmp_path / "home")
    yield s
    s.close()


def test_round_trip(store, tmp_path):
    exp = store.create_experiment("tiny", "xs", 7, {"lr": 3e-4, "nested": {"a": [1, 2]}}, name="first", sweep_id="s1")
    assert exp.id.startswith("e-") and len(exp.id) == 10
    assert exp.status == "queued" and exp.config == {"lr": 3e-4, "nested": {"a": [1, 2]}}

    run = store.create_run(exp.id, "nca", {"steps": 10}, total_tokens=5000)
    assert run.id.startswith("r-") and len(run.id) == 10
    assert run.status == "queued" and run.ncalab_version == ncalab.__version__
    assert store.run_dir(run) == tmp_path / "home" / "experiments" / exp.id / "nca"
    assert store.run_dir(run).is_dir()

    store.start_run(run.id, pid=123, host="box", device="cpu")
    store.heartbeat(run.id, step=4, tokens=400)
    got = store.get_run(run.id)
    assert (got.status, got.pid, got.host, got.device, got.step, got.tokens) == ("running", 123, "box", "cpu", 4, 400)
    assert got.started_at is not None and got.heartbeat_at >= got.started_at

    store.log_metrics(run.id, metric_points("loss", 0, 5) + metric_points("acc", 0, 3, value=lambda i: i / 10))
    # A later batch: LatestMetric must follow the newest point, and NaN must survive.
    store.log_metrics(run.id, metric_points("loss", 5, 2, value=lambda i: math.nan if i == 6 else 0.01))
    latest = store.latest_metrics(run.id)
    assert set(latest) == {"loss", "acc"} and math.isnan(latest["loss"]) and latest["acc"] == pytest.approx(0.2)
    # A late point from before the newest one must not replace it.
    store.log_metrics(run.id, [{"name": "acc", "step": 0, "tokens": 0, "wall_time": 0.0, "value": 0.9}])
    assert store.latest_metrics(run.id)["acc"] == pytest.approx(0.2)

    pts = store.metrics(run.id, "loss")
    assert [p.step for p in pts] == list(range(7)) and pts[5].value == 0.01
    assert len(store.metrics(run.id)) == 11
    tokens, values = store.curve(run.id, "loss")
    assert tokens == [i * 100 for i in range(7)] and values[0] == 1.0 and math.isnan(values[-1])
    assert store.curve(run.id, "nope") == ([], [])

    store.finish_run(run.id, "failed", error="boom")
    got = store.get_run(run.id)
    assert got.status == "failed" and got.error == "boom" and got.finished_at is not None

    store.set_experiment_status(exp.id, "running")
    store.set_experiment_status(exp.id, "completed")
    store.set_summary(exp.id, {"ppl": 12.5})
    store.tag(exp.id, "baseline")
    store.tag(exp.id, "baseline")  # tags are a set
    store.set_note(exp.id, "looks fine")
    got = store.get_experiment(exp.id)
    assert got.status == "completed" and got.started_at is not None and got.finished_at is not None
    assert got.summary == {"ppl": 12.5} and got.tags == ["baseline"] and got.note == "looks fine"
    assert [r.id for r in store.runs_of(exp.id)] == [run.id]


def test_reopen_sees_everything(tmp_path):
    with RunStore(tmp_path) as a:
        exp = a.create_experiment("tiny", "xs", 1, {})
        run = a.create_run(exp.id, "stage1", {}, 10)
        a.log_metrics(run.id, metric_points("loss", 0, 3))
    with RunStore(tmp_path) as b:
        assert b.get_experiment(exp.id).preset == "tiny"
        assert b.curve(run.id, "loss")[0] == [0, 100, 200]


def test_list_experiments_filters_and_order(store):
    a = store.create_experiment("tiny", "xs", 1, {})
    b = store.create_experiment("small", "s", 2, {})
    c = store.create_experiment("tiny", "xs", 3, {})
    store.set_experiment_status(b.id, "running")
    store.set_experiment_status(c.id, "running")
    assert [e.id for e in store.list_experiments()] == [c.id, b.id, a.id]  # newest first
    assert [e.id for e in store.list_experiments(status="running")] == [c.id, b.id]
    assert [e.id for e in store.list_experiments(preset="tiny")] == [c.id, a.id]
    assert [e.id for e in store.list_experiments(status="running", preset="tiny")] == [c.id]
    assert [e.id for e in store.list_experiments(limit=1)] == [c.id]


def test_errors_are_one_line(store):
    with pytest.raises(NcalabError, match="no experiment with id e-missing"):
        store.get_experiment("e-missing")
    with pytest.raises(NcalabError, match="no run with id r-missing"):
        store.get_run("r-missing")
    with pytest.raises(NcalabError, match="no run with id r-missing"):
        store.heartbeat("r-missing", 1, 1)
    with pytest.raises(NcalabError, match="no run with id r-missing"):
        store.log_metrics("r-missing", metric_points("loss", 0, 1))
    with pytest.raises(NcalabError, match="no experiment"):
        store.create_run("e-missing", "nca", {}, 1)
    exp = store.create_experiment("tiny", "xs", 1, {})
    with pytest.raises(NcalabError, match="run kind"):
        store.create_run(exp.id, "bogus", {}, 1)
    run = store.create_run(exp.id, "scratch", {}, 1)
    with pytest.raises(NcalabError, match="cannot finish"):
        store.finish_run(run.id, "running")
    with pytest.raises(NcalabError, match="unknown status"):
        store.set_experiment_status(exp.id, "paused")
    assert "queued" in STATUSES and "lost" in STATUSES


# WAL is SQLite's (test_a_reader_never_blocks_a_writer covers both back ends): this one runs on SQLite only.
@pytest.mark.parametrize("store_backend", ["sqlite"], indirect=True)
def test_wal_mode(store, backend):
    assert backend is None
    with store._engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    # WAL is a property of the file: a plain sqlite3 connection sees it too.
    con = sqlite3.connect(store.db_path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_a_reader_never_blocks_a_writer(store):
    exp = store.create_experiment("tiny", "xs", 1, {})
    with store._read() as s:  # a read transaction held open while another process writes
        assert s.get(type(exp), exp.id).note is None
        with RunStore(store.home) as other:
            t = time.monotonic()
            other.set_note(exp.id, "written")
            assert time.monotonic() - t < 5
    assert store.get_experiment(exp.id).note == "written"


def test_default_home(monkeypatch, tmp_path, backend):
    monkeypatch.setenv("NCALAB_HOME", str(tmp_path / "elsewhere"))
    assert default_home() == tmp_path / "elsewhere"
    with RunStore() as s:
        assert s.home == (tmp_path / "elsewhere").resolve() and s.home.is_dir()
        assert s.db_path is None if backend else s.db_path.is_file()
    monkeypatch.delenv("NCALAB_HOME")
    monkeypatch.chdir(tmp_path)
    assert default_home().resolve() == tmp_path / "runs"


def test_newer_schema_is_refused(tmp_path):
    _sql(tmp_path, "UPDATE store_meta SET value = :v WHERE key = 'schema_version'", v=str(SCHEMA_VERSION + 1))
    with pytest.raises(NcalabError, match="newer ncalab.*upgrade") as info:
        RunStore(tmp_path)
    assert "\n" not in str(info.value)


def test_fresh_store_records_schema_version(tmp_path):
    with RunStore(tmp_path) as s:
        assert s.get_meta("schema_version") == str(SCHEMA_VERSION)


def test_an_old_store_is_upgraded_in_place(tmp_path):
    """Schema 1 (no job columns, reuse keys, sweeps or evaluation items) up to today's, keeping its rows."""
    with RunStore(tmp_path) as s:
        exp = s.create_experiment("tiny", "xs", 1, {"lr": 1})
        run = s.create_run(exp.id, "nca", {}, 10)
        s.log_metrics(run.id, metric_points("loss", 0, 3))
    _sql(tmp_path, "DROP INDEX ix_runs_reuse_key", "DROP TABLE eval_items", "DROP TABLE sweeps",
         "ALTER TABLE runs DROP COLUMN reuse_key", "ALTER TABLE runs DROP COLUMN source_run_id",
         *(f"ALTER TABLE experiments DROP COLUMN {c}" for c in ("pid", "host", "heartbeat_at", "error")),
         "UPDATE store_meta SET value = '1' WHERE key = 'schema_version'")
    with RunStore(tmp_path) as s:
        assert s.get_meta("schema_version") == str(SCHEMA_VERSION)
        assert s.curve(run.id, "loss")[0] == [0, 100, 200] and s.get_experiment(exp.id).config == {"lr": 1}
        assert s.claim_experiment(exp.id, 7, "box") and s.get_experiment(exp.id).pid == 7
        twin = s.create_run(exp.id, "scratch", {}, 10, reuse_key="k")
        s.add_eval_item(twin.id, "q", "sub", samples=1, correct=1)
        sweep = s.create_sweep({"grid": {}})
        assert [i.item for i in s.eval_items(twin.id)] == ["q"] and s.list_sweeps()[0].id == sweep.id


def test_unusable_home_is_a_clear_error(tmp_path, backend):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("hello")
    with pytest.raises(NcalabError, match="cannot create the run store folder"):
        RunStore(not_a_dir)
    if backend:
        return  # the rest is about the SQLite file
    garbage = tmp_path / "garbage"
    garbage.mkdir()
    (garbage / "ncalab.db").write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(NcalabError, match="is damaged") as info:
        RunStore(garbage)
    assert "\n" not in str(info.value)


def test_delete_metrics_after(store):
    exp = store.create_experiment("tiny", "xs", 1, {})
    run = store.create_run(exp.id, "nca", {}, 10_000)
    other = store.create_run(exp.id, "scratch", {}, 10_000)
    store.log_metrics(run.id, metric_points("loss", 0, 10) + metric_points("acc", 0, 10, value=float))
    store.log_metrics(run.id, metric_points("late", 8, 2))  # only after the cut: must vanish from LatestMetric
    store.log_metrics(other.id, metric_points("loss", 0, 10))

    store.delete_metrics_after(run.id, 450)  # keeps tokens 0..400
    assert store.curve(run.id, "loss")[0] == [0, 100, 200, 300, 400]
    assert store.latest_metrics(run.id) == {"loss": pytest.approx(1 / 5), "acc": 4.0}
    assert len(store.curve(other.id, "loss")[0]) == 10  # other runs untouched
    assert store.latest_metrics(other.id)["loss"] == pytest.approx(1 / 10)

    # Resumed training logs past the cut again and LatestMetric follows.
    store.log_metrics(run.id, metric_points("loss", 5, 1, value=lambda i: 0.5))
    assert store.latest_metrics(run.id)["loss"] == 0.5


def test_series_reads_many_curves_at_once_as_one_at_a_time_would(store):
    exp = store.create_experiment("tiny", "xs", 1, {})
    runs = [store.create_run(exp.id, kind, {}, 10_000).id for kind in ("stage1", "nca", "scratch")]
    for i, run in enumerate(runs):
        store.log_metrics(run, metric_points("val_ppl", 0, 5, value=lambda k, i=i: 100.0 / (k + 1 + i)))
        store.log_metrics(run, metric_points("icl_cell_acc", 0, 3, value=float) + metric_points("iclX", 0, 2) + metric_points("loss", 0, 4))
    store.log_metrics(runs[0], metric_points("val_ppl", 5, 1, value=lambda k: float("nan")))  # NULL in the store
    got = store.series(runs[:2], ["val_ppl"], ["icl_"])
    assert set(got) == {(r, n) for r in runs[:2] for n in ("val_ppl", "icl_cell_acc")}  # not iclX: _ is literal
    for (run, name), (steps, tokens, values) in got.items():
        points = store.metrics(run, name)
        assert steps == [p.step for p in points] and (tokens, values[:5]) == (store.curve(run, name)[0], store.curve(run, name)[1][:5])
    assert math.isnan(got[(runs[0], "val_ppl")][2][-1])
    assert store.series([], ["val_ppl"]) == {} and store.series(runs, []) == {}


def test_curve_of_100k_points(store):
    exp = store.create_experiment("tiny", "xs", 1, {})
    run = store.create_run(exp.id, "nca", {}, 1)
    n, batch = 100_000, 25_000
    # Logged out of order across batches: curve() must sort by tokens.
    for b in reversed(range(n // batch)):
        store.log_metrics(
            run.id,
            [{"name": "loss", "step": i, "tokens": i, "wall_time": 0.0, "value": float(i)} for i in range(b * batch, (b + 1) * batch)],
        )
    tokens, values = store.curve(run.id, "loss")
    assert len(tokens) == n and tokens == list(range(n)) and values == [float(i) for i in range(n)]
    assert store.latest_metrics(run.id) == {"loss": float(n - 1)}


# ---- several processes at once (spawned, so each opens its own connections) ---------------------

N_WRITERS, N_POINTS, BATCH = 4, 300, 10


def _reader(home: str, run_ids: list[str], stop, q) -> None:
    try:
        store = RunStore(home)
        polls = 0
        while not stop.is_set():
            for run_id in run_ids:
                tokens, _ = store.curve(run_id, "loss")
                assert tokens == sorted(tokens)
                store.latest_metrics(run_id)
            polls += 1
        store.close()
        q.put(("ok", "reader", polls, ""))
    except BaseException as e:  # in the shape of conftest.store_writer's results
        q.put(("error", "reader", 0, f"{type(e).__name__}: {e}"))


def test_concurrent_writers_and_reader(tmp_path):
    home = str(tmp_path)
    with RunStore(home) as store:
        exp = store.create_experiment("tiny", "xs", 1, {})
        run_ids = [store.create_run(exp.id, "nca", {}, N_POINTS * 100).id for _ in range(N_WRITERS)]

    stop = mp.get_context("spawn").Event()
    results = []
    deadline = time.monotonic() + 60
    with writers(home, run_ids, Writes(points=N_POINTS, batch=BATCH), (_reader, (home, run_ids, stop)),
                 join_timeout=10) as q:
        try:
            while len(results) < N_WRITERS:  # drain the queue before join, so no child blocks on put
                results.append(q.get(timeout=max(1.0, deadline - time.monotonic())))
            stop.set()
            results.append(q.get(timeout=30))
        finally:
            stop.set()
    errors = [msg for kind, _, _, msg in results if kind != "ok"]
    assert not errors, errors
    assert sorted(run for _, run, _, _ in results[:N_WRITERS]) == sorted(run_ids)
    assert [n for _, _, n, _ in results[:N_WRITERS]] == [N_POINTS] * N_WRITERS

    with RunStore(home) as store:
        for run_id in run_ids:
            tokens, values = store.curve(run_id, "loss")
            assert tokens == [i * 100 for i in range(N_POINTS)]
            assert values == pytest.approx([1.0 / (i + 1) for i in range(N_POINTS)])
            assert store.latest_metrics(run_id) == {"loss": pytest.approx(1.0 / N_POINTS)}
            assert store.get_run(run_id).tokens == N_POINTS * 100


def _members(interface: type) -> set[str]:
    return {n for n in vars(interface) if not n.startswith("_")}


def _snapshot(store: RunStore) -> tuple[list, list[str]]:
    """Every row of the database (through a store of its own) and every folder under the home."""
    rows = []
    with RunStore(store.home) as other, other._conn() as conn:
        for table in TABLES:
            rows.append(conn.execute(select(table).order_by(*table.primary_key.columns)).all())
    return rows, sorted(str(p.relative_to(store.home)) for p in store.home.rglob("*") if DB_NAME not in p.name)


@pytest.fixture
def filled(store):
    """One of everything in the store, for a follower to read and (not) write."""
    exp = store.create_experiment("tiny", "xs", 1, {"lr": 1e-3})
    run = store.create_run(exp.id, "nca", {}, total_tokens=1000, reuse_key="k1")
    other = store.create_run(exp.id, "scratch", {}, total_tokens=1000)
    store.log_metrics(run.id, metric_points("loss", 0, 3))
    store.add_eval_item(run.id, "q1", "sub", samples=2, correct=1)
    sweep = store.create_sweep({"axis": [1, 2]}, name="sw")
    store.set_meta("k", "v1")
    return SimpleNamespace(exp=exp.id, run=run, other=other, sweep=sweep.id)


def _writes(f: FollowerStore, w: SimpleNamespace) -> dict:
    """A call of every write, by name."""
    return {
        "create_experiment": lambda: f.create_experiment("tiny", "xs", 2, {}),
        "set_experiment_status": lambda: f.set_experiment_status(w.exp, "running"),
        "set_config": lambda: f.set_config(w.exp, {"lr": 1.0}),
        "set_summary": lambda: f.set_summary(w.exp, {"x": 1}),
        "tag": lambda: f.tag(w.exp, "best"),
        "set_note": lambda: f.set_note(w.exp, "a note"),
        "claim_experiment": lambda: f.claim_experiment(w.exp, 1, "box"),
        "touch_experiment": lambda: f.touch_experiment(w.exp),
        "finish_experiment": lambda: f.finish_experiment(w.exp, "failed", error="boom"),
        "requeue_experiment": lambda: f.requeue_experiment(w.exp),
        "delete_experiment": lambda: f.delete_experiment(w.exp),
        "create_run": lambda: f.create_run(w.exp, "stage1", {}, 10),
        "start_run": lambda: f.start_run(w.run.id, 1, "box", "cpu"),
        "set_run_total": lambda: f.set_run_total(w.run.id, 5),
        "heartbeat": lambda: f.heartbeat(w.run.id, step=9, tokens=900),
        "finish_run": lambda: f.finish_run(w.run.id, "completed"),
        "claim_run": lambda: f.claim_run(w.run.id, 1, "box", "cpu", lambda r: True),
        "adopt_run": lambda: f.adopt_run(w.other.id, w.run),
        "reset_run": lambda: f.reset_run(w.run.id),
        "log_metrics": lambda: f.log_metrics(w.run.id, metric_points("loss", 3, 2)),
        "delete_metrics_named": lambda: f.delete_metrics_named(w.run.id, ("loss",)),
        "delete_metrics_after": lambda: f.delete_metrics_after(w.run.id, 0),
        "add_eval_item": lambda: f.add_eval_item(w.run.id, "q2", "sub", samples=1, correct=1),
        "delete_eval_items": lambda: f.delete_eval_items(w.run.id),
        "replace_eval_items": lambda: f.replace_eval_items(w.run.id, ["sub"], [{"item": "q3", "subtask": "sub", "samples": 1,
                                                                                "correct": 0}]),
        "create_sweep": lambda: f.create_sweep({"axis": [3]}),
        "set_sweep_spec": lambda: f.set_sweep_spec(w.sweep, {}),
        "delete_sweep": lambda: f.delete_sweep(w.sweep),
        "set_meta": lambda: f.set_meta("k", "changed"),
    }


def _reads(w: SimpleNamespace) -> dict:
    """A call of every read, by name, as plain values to compare."""
    return {
        "get_experiment": lambda s: s.get_experiment(w.exp).model_dump(),
        "list_experiments": lambda s: [e.id for e in s.list_experiments(status="queued", preset="tiny", limit=5)],
        "get_run": lambda s: s.get_run(w.run.id).model_dump(),
        "runs_of": lambda s: [r.id for r in s.runs_of(w.exp)],
        "run_dir": lambda s: s.run_dir(w.run),
        "metrics": lambda s: [(p.step, p.tokens, p.value) for p in s.metrics(w.run.id, "loss")],
        "curve": lambda s: s.curve(w.run.id, "loss"),
        "latest_metrics": lambda s: s.latest_metrics(w.run.id),
        "series": lambda s: s.series([w.run.id], ["loss"], ["lo"]),
        "eval_items": lambda s: [(i.item, i.samples, i.correct) for i in s.eval_items(w.run.id)],
        "get_sweep": lambda s: s.get_sweep(w.sweep).model_dump(),
        "list_sweeps": lambda s: [sw.id for sw in s.list_sweeps()],
        "experiments_of_sweep": lambda s: [e.id for e in s.experiments_of_sweep(w.sweep)],
        "get_meta": lambda s: s.get_meta("k"),
    }


def test_follower_writes_change_nothing(store, filled):
    writes = _writes(FollowerStore(store), filled)
    assert set(writes) == _members(StoreWriter)  # every write there is
    before = _snapshot(store)
    must_be_main = {"create_experiment", "create_run", "create_sweep", "claim_run"}  # a new row or a decision
    for name, write in writes.items():
        if name in must_be_main:
            with pytest.raises(NcalabError, match="only the main process"):
                write()
        else:
            assert write() in (None, False, []), name
    assert _snapshot(store) == before


def test_follower_reads_what_the_main_store_wrote(store, filled):
    follower, reads = FollowerStore(store), _reads(filled)
    assert set(reads) | {"home"} == _members(StoreReader)  # every read there is
    assert follower.home == store.home
    for name, read in reads.items():
        assert read(follower) == read(store), name
    # What the main store writes later, the follower reads at once.
    run_id = filled.run.id
    store.log_metrics(run_id, metric_points("loss", 3, 2))
    store.heartbeat(run_id, step=4, tokens=400)
    store.set_meta("k", "v2")
    assert follower.curve(run_id, "loss")[0] == [0, 100, 200, 300, 400]
    assert follower.latest_metrics(run_id) == {"loss": pytest.approx(1.0 / 5)}
    assert (follower.get_run(run_id).step, follower.get_meta("k")) == (4, "v2")


def test_every_public_write_of_the_store_is_in_the_writer_interface_and_the_follower(store):
    reads, writes = _members(StoreReader), _members(StoreWriter)
    public = {n for n in dir(RunStore) if not n.startswith("_")} - {n for n in dir(StoreConnection) if not n.startswith("_")}
    assert not reads & writes
    assert public - reads == writes  # a method of RunStore that is not a read must be a write
    assert reads - {"home"} <= public
    assert reads | writes <= set(vars(FollowerStore))  # the follower defines each itself: nothing passes through
    follower = FollowerStore(store)
    assert isinstance(store, StoreReader) and isinstance(store, StoreWriter)
    assert isinstance(follower, StoreReader) and isinstance(follower, StoreWriter)


# ---- claims: many processes at once, one winner -----------------------------------------------

N_CLAIMERS = 8


def _claimer(home: str, exp_id: str, own_exp: str, run_id: str, barrier, q) -> None:
    """Three races, all processes starting each at once: the same experiment; experiments of
    their own under a limit of 3 running; twin runs of one reuse key."""
    import os

    try:
        store = RunStore(home)
        barrier.wait(120)
        first = store.claim_experiment(exp_id, os.getpid(), "box")
        barrier.wait(120)
        limited = store.claim_experiment(own_exp, os.getpid(), "box", max_running=3 + 1)  # +1: exp_id runs
        barrier.wait(120)
        twin = store.claim_run(run_id, os.getpid(), "box", "cpu", alive=lambda r: True)
        store.close()
        q.put(("ok", (first, limited, twin)))
    except BaseException as e:
        q.put(("error", f"{type(e).__name__}: {e}"))


def test_claims_race_many_processes_one_winner(tmp_path):
    home = str(tmp_path)
    with RunStore(home) as store:
        contested = store.create_experiment("tiny", "xs", 0, {}).id
        own = [store.create_experiment("tiny", "xs", i + 1, {}).id for i in range(N_CLAIMERS)]
        runs = [store.create_run(own[0], "nca", {}, 10, reuse_key="same").id for _ in range(N_CLAIMERS)]
    barrier = mp.get_context("spawn").Barrier(N_CLAIMERS)
    with processes(*[(_claimer, (home, contested, own[i], runs[i], barrier)) for i in range(N_CLAIMERS)]) as q:
        results = [q.get(timeout=240) for _ in range(N_CLAIMERS)]
    assert all(kind == "ok" for kind, _ in results), results
    outcomes = [r for _, r in results]
    assert sum(first for first, _, _ in outcomes) == 1  # one process took the contested experiment
    assert sum(limited for _, limited, _ in outcomes) == 3  # never more running than the limit
    assert sorted(twin for _, _, twin in outcomes) == ["train"] + ["wait"] * (N_CLAIMERS - 1)  # one trains
    with RunStore(home) as store:
        assert len(store.list_experiments(status="running")) == 4
        assert sum(store.get_run(r).status == "running" for r in runs) == 1


# ---- where the store is: URLs, and never a password in a message --------------------------------

def test_the_store_url_and_its_errors_are_one_line_without_the_password(tmp_path, monkeypatch, backend):
    from ncalab.store.connection import mask, store_url

    assert mask("postgresql+psycopg://me:s3cret@db:5432/x failed") == "postgresql+psycopg://me:***@db:5432/x failed"
    assert store_url(tmp_path, "postgresql://me@db/x").drivername == "postgresql+psycopg"
    for bad, message in (("nonsense", "not a database URL"), ("mysql://me:s3cret@db/x", "takes postgresql")):
        with pytest.raises(NcalabError, match=message) as info:
            RunStore(tmp_path, url=bad)
        assert "s3cret" not in str(info.value) and "\n" not in str(info.value)
    # Nothing listens on port 1: one line that names the host and the database, at once.
    t = time.monotonic()
    with pytest.raises(NcalabError, match="cannot open the run store") as info:
        RunStore(tmp_path, url="postgresql+psycopg://me:s3cret@127.0.0.1:1/lab")
    msg = str(info.value)
    assert "127.0.0.1" in msg and "/lab" in msg and "s3cret" not in msg and "\n" not in msg
    assert time.monotonic() - t < 15
    if backend:
        wrong = backend.replace(backend.split(":")[2].split("@")[0], "wrongpw")
        with pytest.raises(NcalabError, match="password authentication failed") as info:
            RunStore(tmp_path, url=wrong)
        assert "wrongpw" not in str(info.value)
        with RunStore(tmp_path) as s:
            assert "***" in s.where and backend.split(":")[2].split("@")[0] not in s.where


def test_a_read_only_store_refuses_writes_at_the_database_too(store, backend):
    exp = store.create_experiment("tiny", "xs", 1, {})
    with RunStore(store.home, readonly=True) as reader:
        assert reader.get_experiment(exp.id).id == exp.id
        with pytest.raises(NcalabError, match="read-only"):
            reader.tag(exp.id, "x")
        with pytest.raises(Exception), reader._engine.begin() as conn:  # past the store's own check
            conn.exec_driver_sql("UPDATE experiments SET note = 'x'")
    assert store.get_experiment(exp.id).note is None
