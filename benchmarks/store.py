"""Run store speed: list 1,000 experiments and load a 100k-point curve, with 1M points stored;
and the TUI's Runs refresh beside 4 and beside 8 processes writing metric points as fast as they can.

Baselines in the same process: listing by scanning metric points for each experiment's last
values (what the LatestMetric table and stored summaries avoid); refreshing as the TUI used
to, opening a new store (a schema write transaction, never disposed) and reaping each time.

  python benchmarks/store.py                                   # SQLite (the default store)
  python benchmarks/store.py --store postgresql+psycopg://USER@HOST:PORT/DB
With --store, each part runs in a new database it creates beside DB (the user needs CREATEDB)
and drops at the end. The last line is one JSON object with list_1000_s, curve_100k_s,
tui_refresh_under_load_s (4 writers), tui_refresh_8_writers_s and fds_after_600_refreshes.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time
import uuid
from contextlib import contextmanager

from ncalab.services.runs import list_rows
from ncalab.store import RunStore

WRITERS = (4, 8)


def _writer(home: str, run_id: str, stop, q) -> None:
    """A training job's writes, as fast as it can: batches of points and a heartbeat."""
    try:
        store = RunStore(home)
        n = 0
        while not stop.is_set():
            store.log_metrics(run_id, [{"name": "loss", "step": k, "tokens": k * 100, "wall_time": 0.0, "value": 1.0}
                                       for k in range(n, n + 10)])
            n += 10
            store.heartbeat(run_id, step=n, tokens=n * 100)
        store.close()
        q.put(("ok", n))
    except BaseException as e:  # noqa: BLE001
        q.put(("error", f"{type(e).__name__}: {e}"))


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@contextmanager
def fresh_store(base: str | None):
    """A database of its own for one part (NCALAB_STORE, which the writer processes inherit),
    created beside ``base`` and dropped afterwards; nothing to do for SQLite."""
    if base is None:
        yield
        return
    from sqlalchemy import create_engine, make_url

    name = f"ncalab_bench_{uuid.uuid4().hex[:8]}"
    admin = create_engine(make_url(base).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.exec_driver_sql(f"CREATE DATABASE {name}")
    os.environ["NCALAB_STORE"] = make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield
    finally:
        os.environ.pop("NCALAB_STORE", None)
        with admin.connect() as c:
            c.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        admin.dispose()


def tui_under_load(writers: int) -> dict:
    """The Runs refresh (list every experiment) through the app's shared read-only store, with
    ``writers`` writer processes running; and the old refresh, for the baseline."""
    from ncalab.jobs.queue import reap
    from ncalab.tui.stores import AppStores

    home = tempfile.mkdtemp(prefix="ncalab-store-load-")
    with RunStore(home) as store:
        runs = []
        for i in range(100):
            e = store.create_experiment("code", "tiny", i, {"model": {"d_model": 128}})
            store.set_summary(e.id, {"ppl_nca": 100.0 + i, "ppl_scratch": 95.0, "gain": -0.05, "speedup": None})
            if i < writers:
                runs.append(store.create_run(e.id, "nca", {}, 10**9).id)
            else:
                store.finish_experiment(e.id, "completed")
    ctx = mp.get_context("spawn")
    stop, q = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(home, r, stop, q)) for r in runs]
    for p in procs:
        p.start()
    time.sleep(3)  # the writers are up and writing
    started = time.perf_counter()
    try:
        stores = AppStores(home)
        list_rows(stores.reader())  # the app opens it once, at start
        fds_before = _fds()
        times = []
        for _ in range(600):
            t = time.perf_counter()
            rows = list_rows(stores.reader())
            times.append(time.perf_counter() - t)
        assert len(rows) == 100
        fds_after = _fds()
        stores.close()
        old_times, old_fds_before = [], _fds()
        for _ in range(50):  # what each refresh did before: a new store, a reap, the list
            t = time.perf_counter()
            store = RunStore(home)
            reap(store)
            list_rows(store)
            old_times.append(time.perf_counter() - t)
        old_fds = _fds() - old_fds_before
    finally:
        stop.set()
        load_s = time.perf_counter() - started + 3  # the writers wrote from their start
        results = [q.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
    errors = [msg for kind, msg in results if kind == "error"]
    return {"refresh_s": statistics.median(times), "refresh_worst_s": max(times), "fds_before": fds_before,
            "fds_after": fds_after, "old_refresh_s": statistics.median(old_times), "old_fds_gained_50": old_fds,
            "points_written": sum(n for kind, n in results if kind == "ok"), "writer_errors": errors, "load_s": load_s}


def list_and_curve() -> dict:
    """1,000 experiments and 1M metric points: list them all, load one 100k-point curve."""
    home = tempfile.mkdtemp(prefix="ncalab-store-bench-")
    store = RunStore(home)
    t0 = time.perf_counter()
    runs = []
    for i in range(1000):
        e = store.create_experiment("code", "tiny", i, {"i": i, "model": {"d_model": 128}})
        store.set_summary(e.id, {"ppl_nca": 100.0 + i, "ppl_scratch": 95.0, "gain": -0.05, "speedup": None})
        store.finish_experiment(e.id, "completed")
        if i < 10:
            runs.append(store.create_run(e.id, "nca", {}, 10**6))
    for r in runs:  # 1M points: ten runs of 100k
        pts = [{"name": "val_ppl", "step": k, "tokens": k * 512, "wall_time": k * 0.01, "value": 100.0 / (1 + k)} for k in range(100_000)]
        for j in range(0, len(pts), 20_000):
            store.log_metrics(r.id, pts[j : j + 20_000])
    build_s = time.perf_counter() - t0
    t = time.perf_counter()
    assert len(list_rows(store)) == 1000
    list_s = time.perf_counter() - t
    t = time.perf_counter()
    assert len(store.curve(runs[0].id, "val_ppl")[0]) == 100_000
    curve_s = time.perf_counter() - t
    t = time.perf_counter()  # baseline: latest values by scanning the points of every run
    for r in runs:
        store.metrics(r.id)[-1]
    scan_s = (time.perf_counter() - t) / len(runs) * 1000  # extrapolated to 1,000 runs with points
    where = store.where
    store.close()
    return {"store": where, "build_s": build_s, "list_s": list_s, "curve_s": curve_s, "scan_s": scan_s}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", help="a PostgreSQL URL (default: SQLite files in temporary folders)")
    args = ap.parse_args(argv)
    with fresh_store(args.store):
        big = list_and_curve()
    loads = {}
    for n in WRITERS:
        with fresh_store(args.store):
            loads[n] = tui_under_load(n)
    print(f"{big['store'].split(':')[0] if args.store else 'sqlite'} store with 1,000 experiments and 1M metric points "
          f"(built in {big['build_s']:.1f}s)")
    print(f"  list 1,000 experiments        {big['list_s']:8.3f} s   (target < 0.3)")
    print(f"  load a 100k-point curve       {big['curve_s']:8.3f} s   (target < 1)")
    print(f"  baseline: scan points to list {big['scan_s']:8.1f} s   (ratio {big['scan_s'] / big['list_s']:,.0f}x)")
    for n, load in loads.items():
        print(f"TUI Runs refresh (100 experiments) beside {n} writer processes ({load['points_written']:,} points "
              f"written in {load['load_s']:.0f} s, errors: {load['writer_errors'] or 'none'})")
        print(f"  refresh, shared read-only store  {load['refresh_s']:8.4f} s   (slowest of 600: {load['refresh_worst_s']:.3f} s)")
        print(f"  open files: {load['fds_before']} before 600 refreshes, {load['fds_after']} after")
        print(f"  baseline: a new store per refresh {load['old_refresh_s']:8.4f} s   "
              f"(ratio {load['old_refresh_s'] / load['refresh_s']:,.1f}x; {load['old_fds_gained_50']} files gained in 50 refreshes)")
    four, eight = loads[4], loads[8]
    print(json.dumps({"backend": "postgresql" if args.store else "sqlite",
                      "list_1000_s": round(big["list_s"], 4), "curve_100k_s": round(big["curve_s"], 4),
                      "baseline_scan_list_s": round(big["scan_s"], 2), "ratio": round(big["scan_s"] / big["list_s"], 1),
                      "tui_refresh_under_load_s": round(four["refresh_s"], 4),
                      "tui_refresh_8_writers_s": round(eight["refresh_s"], 4),
                      "points_per_s_4_writers": round(four["points_written"] / four["load_s"]),
                      "points_per_s_8_writers": round(eight["points_written"] / eight["load_s"]),
                      "fds_before_600_refreshes": four["fds_before"], "fds_after_600_refreshes": four["fds_after"],
                      "baseline_tui_refresh_new_store_s": round(four["old_refresh_s"], 4),
                      "baseline_fds_gained_50_refreshes": four["old_fds_gained_50"],
                      "ratio_tui_refresh": round(four["old_refresh_s"] / four["refresh_s"], 1),
                      "writer_errors": len(four["writer_errors"]) + len(eight["writer_errors"])}))


if __name__ == "__main__":
    main()
