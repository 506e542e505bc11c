"""The TUI beside training jobs: a read-only store that never takes the write lock, and an app
that refreshes for half a minute under eight writing processes without a lock error, a lost or
duplicated point or a growing number of open files, on SQLite and on a PostgreSQL server."""

import asyncio
import gc
import os
import sqlite3
import time

import pytest
from conftest import Writes, until, writers

from ncalab.errors import NcalabError
from ncalab.store import RunStore
from ncalab.tui.app import NcalabApp


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


# ---- the read-only store ----------------------------------------------------------------------

def test_a_reader_needs_no_lock_and_writes_nothing(tmp_path):
    with RunStore(tmp_path) as store:
        exp = store.create_experiment("code", "tiny", 0, {})
    # Another process is in the middle of a write transaction: a writer's opening (its schema
    # transaction) would wait for it; a reader opens and reads at once.
    holder = sqlite3.connect(tmp_path / "ncalab.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    holder.execute("UPDATE experiments SET note = 'being written'")
    try:
        t = time.monotonic()
        reader = RunStore(tmp_path, readonly=True)
        assert [e.id for e in reader.list_experiments()] == [exp.id]
        assert time.monotonic() - t < 5  # a writer would wait up to 30 s here
        assert reader.get_experiment(exp.id).note is None  # the uncommitted write is not seen
        with pytest.raises(NcalabError, match="read-only"):
            reader.tag(exp.id, "x")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    reader.close()
    with RunStore(tmp_path) as store:
        assert store.get_experiment(exp.id).tags == []


def test_a_reader_refuses_what_it_cannot_read_as_it_is(tmp_path):
    with pytest.raises(NcalabError, match="no run store at"):
        RunStore(tmp_path / "nothing", readonly=True)
    assert not (tmp_path / "nothing").exists()  # nothing created by looking
    (tmp_path / "other").mkdir()
    sqlite3.connect(tmp_path / "other" / "ncalab.db").execute("CREATE TABLE t (x)")
    with pytest.raises(NcalabError, match="is not an ncalab run store"):
        RunStore(tmp_path / "other", readonly=True)
    RunStore(tmp_path / "old").close()
    for version, message in (("3", "older than this ncalab's .*upgrades it"), ("99", "newer ncalab")):
        with sqlite3.connect(tmp_path / "old" / "ncalab.db") as db:
            db.execute("UPDATE store_meta SET value = ? WHERE key = 'schema_version'", (version,))
        with pytest.raises(NcalabError, match=message):
            RunStore(tmp_path / "old", readonly=True)


# ---- the app under load -----------------------------------------------------------------------

# 35 s: long enough to see open files grow (the old app gained ~11 a minute, ~4 over the settled
# 20 s below, against the 2 allowed), short enough for the suite
SECONDS, WRITERS, BATCH = 35, 8, 10


@pytest.mark.slow
def test_the_app_refreshing_beside_eight_writers_for_half_a_minute(tmp_path, store_backend):
    """store_backend: SQLite, then a PostgreSQL server (NCALAB_STORE, which the writers inherit)."""
    from ncalab.services import sweeps
    from ncalab.services.config import resolve_config

    home = str(tmp_path)
    with RunStore(home) as store:
        runs = []
        for seed in range(WRITERS):
            exp = store.create_experiment("code", "tiny", seed, {})
            runs.append(store.create_run(exp.id, "nca", {}, 10**9).id)
            store.claim_experiment(exp.id, os.getpid(), "elsewhere")  # running, on a host reap cannot check
        spec_cfg = resolve_config("code", "tiny")
        sweep = store.create_sweep({"preset": "code", "scale": "tiny", "base": spec_cfg.to_dict(),
                                    "grid": {"stage2.lr": [0.001, 0.0003]}, "seeds": [0]}, name="idle")

    async def scenario():
        app = NcalabApp(home=home, seed=7, autoplay=False)
        samples, shown = [], set()
        async with app.run_test(size=(100, 30)) as pilot:
            start = time.monotonic()
            turn = 0
            while time.monotonic() - start < SECONDS:
                name = "RunsScreen" if turn % 2 == 0 else "SweepsScreen"
                await pilot.press("r" if turn % 2 == 0 else "w")  # Runs and Sweeps in turn, 2 s each
                await until(pilot, lambda name=name: type(app.screen).__name__ == name, f"{name} opening")
                turn_end = time.monotonic() + 2
                while time.monotonic() < turn_end:  # refreshing all the while, each refresh awaited
                    refresh = app.screen.action_refresh()
                    await until(pilot, lambda r=refresh: r.is_finished, f"a refresh of {name}")
                shown.add(type(app.screen).__name__)
                text = str(app.screen.query_one("#summary" if turn % 2 == 0 else "#sweep-table").render())
                assert "cannot open" not in text and "locked" not in text, text
                gc.collect()  # files held by garbage (this or earlier tests') are not the app's
                samples.append((time.monotonic() - start, _open_fds()))
                turn += 1
            assert app.screen.query_one("#table" if (turn - 1) % 2 == 0 else "#sweep-list").row_count >= 1  # the screen shown last
        return samples, shown

    # a training job's writes: batches of metric points and a heartbeat, 20 ms apart
    with writers(home, runs, Writes(seconds=SECONDS, batch=BATCH, pause=0.02)) as q:
        samples, shown = asyncio.run(scenario())
        results = [q.get(timeout=120) for _ in runs]
    errors = [msg for kind, _, _, msg in results if kind != "ok"]
    assert not errors, errors
    assert shown == {"RunsScreen", "SweepsScreen"}
    # Open files settle once every screen has opened, then stay put (the old app gained ~11 a minute).
    # (counted over the time the turns took, which a loaded machine stretches: not a fixed count)
    settled = [(t, fds) for t, fds in samples if t > 10]
    assert len(settled) >= 4 and settled[-1][0] - settled[0][0] >= 18, samples
    assert max(f for _, f in settled) - min(f for _, f in settled) <= 2, samples
    with RunStore(home) as store:
        for _, run_id, n, _ in results:
            tokens, values = store.curve(run_id, "loss")
            assert tokens == [k * 100 for k in range(n)] and n >= 100  # every point written is there
            assert values == pytest.approx([1 / (k + 1) for k in range(n)])
            assert store.get_run(run_id).tokens == n * 100
        assert sweeps.list_sweeps(store)[0]["sweep_id"] == sweep.id
