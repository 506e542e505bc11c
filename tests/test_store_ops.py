"""What a store goes through on a cluster: a copy to PostgreSQL and back, a backup while jobs
write, a damaged file, and an SQLite store that Slurm's nodes would share over the network."""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from pathlib import Path

import pytest
from conftest import Writes, cli_json, metric_points, stop_event, wait_until, writers
from sqlalchemy import select

from ncalab.cli.main import main
from ncalab.errors import NcalabError
from ncalab.store import RunStore
from ncalab.store.schema import TABLES


def _fill(store: RunStore) -> None:
    """One of everything, with what a copy could get wrong: NaN, ties in created_at, upserted items."""
    sweep = store.create_sweep({"grid": {"a": [1, 2]}}, name="sw")
    exps = [store.create_experiment("code", "tiny", i, {"i": i}, sweep_id=sweep.id) for i in range(3)]
    for i, exp in enumerate(exps):
        run = store.create_run(exp.id, "nca", {}, 10_000, reuse_key=f"k{i}")
        store.log_metrics(run.id, metric_points("loss", 0, 50) + [{"name": "nan", "step": 1, "tokens": 1, "wall_time": 0.0,
                                                            "value": math.nan}])
        for item in ("q3", "q1", "q2", "q1"):  # insertion order, and an upsert that keeps its place
            store.add_eval_item(run.id, item, "sub", samples=2, correct=1)
    store.finish_experiment(exps[0].id, "completed")
    store.tag(exps[1].id, "best")
    store.set_meta("max_jobs", "3")


def _rows(store: RunStore) -> list:
    """Every row of every table, in the store's own orders where it has them."""
    out = []
    with store._conn() as conn:
        for table in TABLES:
            out.append([tuple(r) for r in conn.execute(select(table).order_by(*table.primary_key.columns))])
    return out


def _listed(store: RunStore) -> list:
    exps = store.list_experiments()
    runs = [r for e in exps for r in store.runs_of(e.id)]
    return [[e.id for e in exps], [[i.item for i in store.eval_items(r.id)] for r in runs], [s.id for s in store.list_sweeps()]]


# slow (a PostgreSQL server); the fast suite keeps the SQLite store's backups and damage checks
@pytest.mark.slow
def test_copy_sqlite_to_postgresql_and_back(tmp_path, pg_server, capsys, monkeypatch):
    home, url = tmp_path / "home", pg_server.new_database()
    with RunStore(home) as store:
        _fill(store)
        rows, listed, fp = _rows(store), _listed(store), store.fingerprint()
    out = cli_json(capsys, "store", "copy", "--to", url, "--home", str(home))
    assert out["rows"] == fp["rows"] and out["points_sha256"] == fp["points_sha256"]
    assert pg_server.password not in json.dumps(out) and "***" in out["to"]
    with RunStore(home, url=url) as pg:
        assert _rows(pg) == rows and _listed(pg) == listed and pg.fingerprint() == fp
        run = pg.runs_of(listed[0][0])[0]
        pg.log_metrics(run.id, metric_points("loss", 50, 2))  # ids go on after the copied ones
        assert pg.curve(run.id, "loss")[0][-1] == 5100
        pg.delete_metrics_after(run.id, 4900)
    # Copied again into a store that is not empty: refused, nothing touched.
    capsys.readouterr()
    assert main(["store", "copy", "--to", url, "--home", str(home)]) == 1
    err = capsys.readouterr().err
    assert "already holds a run store" in err and len(err.strip().splitlines()) == 1
    # And back, from the server (--store) to a new SQLite file.
    back = tmp_path / "back" / "ncalab.db"
    out = cli_json(capsys, "--store", url, "store", "copy", "--to", str(back), "--home", str(home))
    assert out["rows"] == fp["rows"] and out["points_sha256"] == fp["points_sha256"]
    assert "NCALAB_STORE" not in os.environ  # --store held for that command only
    with RunStore(back.parent) as sq:
        assert _rows(sq) == rows and _listed(sq) == listed
    info = cli_json(capsys, "--store", url, "store", "info", "--home", str(home))
    assert info["backend"] == "postgresql" and pg_server.password not in json.dumps(info)
    capsys.readouterr()
    assert main(["--store", url, "runs", "show", listed[0][0], "--home", str(home)]) == 0
    shown = capsys.readouterr().out
    assert "store: postgresql+psycopg://ncalab:***@127.0.0.1" in shown and pg_server.password not in shown


def test_backup_while_jobs_write_is_consistent(tmp_path, capsys):
    home = tmp_path / "home"
    with RunStore(home) as store:
        _fill(store)
        exp = store.create_experiment("code", "tiny", 9, {})
        runs = [store.create_run(exp.id, "nca", {}, 10**9).id for _ in range(2)]
    stop = stop_event()
    with writers(home, runs, Writes(seconds=60.0, batch=20, heartbeat=False), stop=stop) as q:
        wait_until(lambda: all(_stored(home, r) for r in runs), "both writers storing points", poll=0.5)
        (tmp_path / "b").mkdir()  # a folder: the backup is named after the time in it
        out = cli_json(capsys, "store", "backup", str(tmp_path / "b"), "--home", str(home))
        written = {r: _stored(home, r) for r in runs}
        wait_until(lambda: all(_stored(home, r) > written[r] for r in runs), "both writers going on after the backup")
        stop.set()  # the backup was taken while both wrote, and they wrote on after it
        results = [q.get(timeout=120) for _ in runs]
    assert all(kind == "ok" for kind, *_ in results), results
    copy = Path(out["to"])
    assert copy.parent == tmp_path / "b" and copy.name.startswith("ncalab-")
    restored = tmp_path / "restored"
    restored.mkdir()
    (restored / "ncalab.db").write_bytes(copy.read_bytes())
    with RunStore(restored) as b:
        assert b.fingerprint() == {"rows": out["rows"], "points_sha256": out["points_sha256"]}
        for r in runs:  # one instant: every batch whole, the latest value that of the last point
            tokens, _ = b.curve(r, "loss")
            assert tokens == [i * 100 for i in range(len(tokens))] and len(tokens) % 20 == 0
            assert not tokens or b.latest_metrics(r)["loss"] == pytest.approx(1.0 / len(tokens))
    with RunStore(home) as store:  # the writers went on meanwhile
        assert sum(len(store.curve(r, "loss")[0]) for r in runs) == sum(n for _, _, n, _ in results)
    capsys.readouterr()
    assert main(["store", "backup", str(copy), "--home", str(home)]) == 1  # never overwrites
    assert "never overwrites" in capsys.readouterr().err


def test_backup_of_a_server_store_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("NCALAB_STORE", "postgresql+psycopg://me:s3cret@db.example/lab")
    assert main(["store", "backup", str(tmp_path / "b.db"), "--home", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "pg_dump" in err and "s3cret" not in err and len(err.strip().splitlines()) == 1


# ---- a damaged store file ------------------------------------------------------------------------

def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize("damage", ["truncated", "overwritten"])
def test_a_damaged_store_is_one_line_naming_the_backup_and_is_never_written(tmp_path, capsys, damage):
    home = tmp_path / "home"
    with RunStore(home) as store:
        _fill(store)
        for i in range(40):  # enough pages that the damage lands in the middle of the data
            store.log_metrics(store.runs_of(store.list_experiments()[0].id)[0].id, metric_points(f"m{i}", 0, 200))
        exp_id = store.list_experiments()[0].id
    assert main(["store", "backup", str(tmp_path / "backup.db"), "--home", str(home)]) == 0
    db = home / "ncalab.db"
    data = db.read_bytes()
    if damage == "truncated":
        db.write_bytes(data[: len(data) // 2])
    else:
        db.write_bytes(data[:4096] + os.urandom(len(data) // 2) + data[4096 + len(data) // 2:])
    before = _sha(db)
    for args in (["runs", "list"], ["runs", "show", exp_id], ["store", "info"], ["store", "backup", str(tmp_path / "again.db")],
                 ["store", "copy", "--to", str(tmp_path / "copy.db")]):
        capsys.readouterr()
        assert main([*args, "--home", str(home)]) == 1, args
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "damaged" in err and str(tmp_path / "backup.db") in err, (args, err)
        assert _sha(db) == before, args  # nothing was written to it
    assert not (tmp_path / "again.db").exists()


def test_a_store_without_a_backup_says_so(tmp_path):
    (tmp_path / "ncalab.db").write_bytes(b"garbage" * 1000)
    with pytest.raises(NcalabError, match="no backup of it is recorded"):
        RunStore(tmp_path)


# ---- Slurm and the file system of an SQLite store --------------------------------------------------

MOUNTS = """/dev/vda / ext4 rw 0 0
tmpfs /tmp tmpfs rw 0 0
server:/export /shared nfs4 rw 0 0
lfs@o2ib:/scratch /lus lustre rw 0 0
//nas/lab /mnt/my\\040lab cifs rw 0 0
"""


def test_the_file_system_of_a_path_is_its_longest_mount_point(tmp_path):
    from ncalab.jobs.slurm import filesystem_of

    table = tmp_path / "mounts"
    table.write_text(MOUNTS)
    assert filesystem_of(Path("/shared/runs/ncalab.db"), table) == "nfs4"
    assert filesystem_of(Path("/lus/u/runs"), table) == "lustre"
    assert filesystem_of(Path("/mnt/my lab/runs"), table) == "cifs"
    assert filesystem_of(Path("/sharedother/x"), table) == "ext4"
    assert filesystem_of(Path("/tmp/x"), table) == "tmpfs"
    assert filesystem_of(Path("/x"), tmp_path / "missing") is None


def test_slurm_refuses_an_sqlite_store_on_a_network_file_system_before_submitting(tmp_path, monkeypatch, capsys):
    from ncalab.jobs import slurm

    pytest.importorskip("submitit")
    home = tmp_path / "home"
    table = tmp_path / "mounts"
    table.write_text(f"/dev/vda / ext4 rw 0 0\nserver:/export {home} nfs4 rw 0 0\n")
    monkeypatch.setattr(slurm, "MOUNTS", table)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\ntouch {tmp_path}/submitted\n")
    (bin_dir / "sbatch").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    rc = main(["run", "--preset", "code", "--executor", "slurm", "--home", str(home), "--set", "data.corpus=python-stdlib"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and "network file system (nfs4)" in err[-1] and "NCALAB_STORE" in err[-1]
    assert not (tmp_path / "submitted").exists()
    with RunStore(home) as store:
        assert store.list_experiments() == []  # nothing stored either
    # The same store on a local disk goes ahead (submitit-local, one node, proceeds as before).
    table.write_text("/dev/vda / ext4 rw 0 0\n")
    with RunStore(home) as store:
        slurm.check_store(store)
    # And a PostgreSQL store on the network file system is what the message asks for.
    monkeypatch.setenv("NCALAB_STORE", "postgresql+psycopg://me@db.example/lab")
    slurm.check_store(type("S", (), {"db_path": None, "home": home})())


# ---- the database server goes away during a run ----------------------------------------------------

def _run_on_server(tmp_path, pg_server, monkeypatch, retry_s: str) -> str:
    """A run of a new experiment, in a fresh database of the test server that the store (and the
    processes the test starts) reach through NCALAB_STORE, retrying a lost server for retry_s."""
    monkeypatch.setenv("NCALAB_STORE", pg_server.new_database())
    monkeypatch.setenv("NCALAB_STORE_RETRY_S", retry_s)
    with RunStore(tmp_path) as store:
        return store.create_run(store.create_experiment("code", "tiny", 0, {}).id, "nca", {}, 10**9).id


def _run_while(home, run_id, seconds, meanwhile, stop=None) -> tuple:
    """A run's writes (a batch of 10 points and a heartbeat every 50 ms, until the time is up,
    ``stop`` is set or the store gives up) while ``meanwhile`` happens; (kind, points stored, message)."""
    with writers(home, [run_id], Writes(seconds=seconds, batch=10, pause=0.05), stop=stop) as q:
        meanwhile()
        kind, _, n, msg = q.get(timeout=180)
        return kind, n, msg


# slow (end to end); the fast suite keeps the server that stays away (bounded retry, points kept)
@pytest.mark.slow
def test_the_server_goes_away_and_comes_back_during_a_run(tmp_path, pg_server, monkeypatch):
    run_id = _run_on_server(tmp_path, pg_server, monkeypatch, retry_s="30")

    stop = stop_event()

    def restart():
        _until_writing(tmp_path, run_id)
        pg_server.stop("fast")
        time.sleep(4)
        pg_server.start()
        again = _stored(tmp_path, run_id) + 30
        wait_until(lambda: _stored(tmp_path, run_id) >= again, "the run writing on after the restart", timeout=60)
        stop.set()

    try:
        kind, n, msg = _run_while(tmp_path, run_id, 90, restart, stop)
    finally:
        pg_server.start() if not _up(pg_server) else None
    assert kind == "ok", msg  # it waited for the server and went on
    with RunStore(tmp_path) as store:
        tokens = store.curve(run_id, "loss")[0]
        assert tokens == [i * 100 for i in range(n)] and n > 0  # nothing lost, nothing twice


# slow (a PostgreSQL server); the fast suite keeps the store's writers on SQLite
@pytest.mark.slow
def test_the_server_stays_away_and_the_run_fails_cleanly_keeping_its_points(tmp_path, pg_server, monkeypatch):
    run_id = _run_on_server(tmp_path, pg_server, monkeypatch, retry_s="4")
    stopped = {}

    def go_away():
        _until_writing(tmp_path, run_id)
        # fast: the test server does not sync its commits (speed), so a crash (immediate) could
        # lose what it acknowledged; a real server keeps them (synchronous_commit).
        pg_server.stop("fast")
        stopped["at"] = time.monotonic()

    try:
        kind, n, msg = _run_while(tmp_path, run_id, 120, go_away)
        failed_after = time.monotonic() - stopped["at"]
    finally:
        pg_server.start()
    assert kind == "failed" and n > 0, msg
    assert failed_after < 4 + 15  # the bounded retry, then the failure
    assert "\n" not in msg and "127.0.0.1" in msg and pg_server.password not in msg
    with RunStore(tmp_path) as store:
        tokens = store.curve(run_id, "loss")[0]
        # Every batch stored before the failure is kept, whole; a commit cut off by the server
        # stopping may have landed (the run could not know): then that one batch more.
        assert tokens == [i * 100 for i in range(len(tokens))] and len(tokens) in (n, n + 10)


def _stored(home, run_id: str) -> int:
    with RunStore(home) as store:
        return len(store.curve(run_id, "loss")[0])


def _until_writing(home, run_id: str) -> None:
    """Wait until the run has stored a few batches (starting a process takes long on a loaded machine)."""
    wait_until(lambda: _stored(home, run_id) >= 30, "the run storing 30 points", timeout=120)


def _up(server) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", server.port)) == 0


# ---- the disk fills during a run ----------------------------------------------------------------------

# `ncalab run` in a process whose files may not grow past argv[1] bytes from its second checkpoint
# on (RLIMIT_FSIZE: what a full disk does to every write from then on); SIGXFSZ ignored, so a
# write past it fails (EFBIG) instead of killing the process.
FULL_DISK = r"""
import resource, signal, sys
from ncalab.train import checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
original, saves = checkpoint.save, []
def save(path, *args, **kwargs):
    saves.append(path)
    if len(saves) == 2:
        resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[1]), resource.RLIM_INFINITY))
    return original(path, *args, **kwargs)
checkpoint.save = save
from ncalab.cli.main import main
sys.exit(main(sys.argv[2:]))
"""


@pytest.mark.slow
def test_the_disk_fills_during_a_run_and_resume_continues_once_there_is_space(tmp_path, code_corpus, capsys):
    import sqlite3
    import subprocess
    import sys

    from conftest import MICRO, wait_until

    from ncalab.train import checkpoint

    home = tmp_path / "h"
    cp = subprocess.run([sys.executable, "-c", FULL_DISK, str(32 * 1024), "run", "--corpus", str(code_corpus),
                         "--home", str(home), *MICRO], capture_output=True, text=True, timeout=900)
    last = cp.stderr.strip().splitlines()[-1]
    assert cp.returncode == 1 and last.startswith("error: no space left to write the checkpoint"), cp.stderr[-2000:]
    assert "File too large" in last and "runs resume" in last
    with sqlite3.connect(home / "ncalab.db") as con:  # the store is intact
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    with RunStore(home) as store:
        exp = store.list_experiments()[0]
        stage1 = next(r for r in store.runs_of(exp.id) if r.kind == "stage1")
        last_ckpt = store.run_dir(stage1) / "checkpoints" / "last"
        found = checkpoint.find(last_ckpt)  # the previous checkpoint, whole; no partial copy left
        assert found == last_ckpt and checkpoint.read_marker(found)["seq"] == 1
        checkpoint.check_readable(found)
        assert not checkpoint.variant(last_ckpt, ".tmp").exists()
        assert store.curve(stage1.id, "train_loss")[0]  # the points logged before the failure are there
    capsys.readouterr()
    assert main(["runs", "resume", exp.id, "--home", str(home)]) == 0, capsys.readouterr().err
    with RunStore(home) as store:
        done = wait_until(lambda: store.get_experiment(exp.id).status in ("completed", "failed"),
                          "the resumed experiment ending", timeout=600)
        assert done and store.get_experiment(exp.id).status == "completed"
        for r in store.runs_of(exp.id):
            tokens, _ = store.curve(r.id, "train_loss")
            assert tokens == sorted(set(tokens)), f"{r.kind}: duplicated points after the resume"
