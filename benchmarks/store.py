"""Run store speed: list 1,000 experiments and load a 100k-point curve, with 1M points stored;
and the TUI's Runs refresh beside four processes writing metric points as fast as they can.

Baselines in the same process: listing by scanning metric points for each experiment's last
values (what the LatestMetric table and stored summaries avoid); refreshing as the TUI used
to, opening a new store (a schema write transaction, never disposed) and reaping each time.

  python benchmarks/store.py
The last line is one JSON object with list_1000_s, curve_100k_s, tui_refresh_under_load_s
and fds_after_600_refreshes.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import statistics
import tempfile
import time

from ncalab.services.runs import list_rows
from ncalab.store import RunStore

WRITERS = 4


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


def tui_under_load() -> dict:
    """The Runs refresh (list every experiment) through the app's shared read-only store, with
    four writer processes running; and the old refresh, for the baseline."""
    from ncalab.jobs.queue import reap
    from ncalab.tui.stores import AppStores

    home = tempfile.mkdtemp(prefix="ncalab-store-load-")
    with RunStore(home) as store:
        runs = []
        for i in range(100):
            e = store.create_experiment("code", "tiny", i, {"model": {"d_model": 128}})
            store.set_summary(e.id, {"ppl_nca": 100.0 + i, "ppl_scratch": 95.0, "gain": -0.05, "speedup": None})
            if i < WRITERS:
                runs.append(store.create_run(e.id, "nca", {}, 10**9).id)
            else:
                store.finish_experiment(e.id, "completed")
    ctx = mp.get_context("spawn")
    stop, q = ctx.Event(), ctx.Queue()
    procs = [ctx.Process(target=_writer, args=(home, r, stop, q)) for r in runs]
    for p in procs:
        p.start()
    time.sleep(3)  # the writers are up and writing
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
        results = [q.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
    errors = [msg for kind, msg in results if kind == "error"]
    return {"refresh_s": statistics.median(times), "refresh_worst_s": max(times), "fds_before": fds_before,
            "fds_after": fds_after, "old_refresh_s": statistics.median(old_times), "old_fds_gained_50": old_fds,
            "points_written": sum(n for kind, n in results if kind == "ok"), "writer_errors": errors}


def main() -> None:
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
    # 1M points: ten runs of 100k
    for r in runs:
        pts = [{"name": "val_ppl", "step": k, "tokens": k * 512, "wall_time": k * 0.01, "value": 100.0 / (1 + k)} for k in range(100_000)]
        for j in range(0, len(pts), 20_000):
            store.log_metrics(r.id, pts[j : j + 20_000])
    build_s = time.perf_counter() - t0

    t = time.perf_counter()
    rows = list_rows(store)
    list_s = time.perf_counter() - t
    assert len(rows) == 1000

    t = time.perf_counter()
    x, y = store.curve(runs[0].id, "val_ppl")
    curve_s = time.perf_counter() - t
    assert len(x) == 100_000

    # baseline: latest values by scanning the points of every run
    t = time.perf_counter()
    for r in runs:
        store.metrics(r.id)[-1]
    scan_s = (time.perf_counter() - t) / len(runs) * 1000  # extrapolated to 1,000 runs with points

    print(f"store with 1,000 experiments and 1M metric points (built in {build_s:.1f}s)")
    print(f"  list 1,000 experiments        {list_s:8.3f} s   (target < 0.3)")
    print(f"  load a 100k-point curve       {curve_s:8.3f} s   (target < 1)")
    print(f"  baseline: scan points to list {scan_s:8.1f} s   (ratio {scan_s / list_s:,.0f}x)")
    load = tui_under_load()
    print(f"TUI Runs refresh (100 experiments) beside {WRITERS} writer processes "
          f"({load['points_written']:,} points written, errors: {load['writer_errors'] or 'none'})")
    print(f"  refresh, shared read-only store  {load['refresh_s']:8.4f} s   (slowest of 600: {load['refresh_worst_s']:.3f} s)")
    print(f"  open files: {load['fds_before']} before 600 refreshes, {load['fds_after']} after")
    print(f"  baseline: a new store per refresh {load['old_refresh_s']:8.4f} s   "
          f"(ratio {load['old_refresh_s'] / load['refresh_s']:,.1f}x; {load['old_fds_gained_50']} files gained in 50 refreshes)")
    print(json.dumps({"list_1000_s": round(list_s, 4), "curve_100k_s": round(curve_s, 4),
                      "baseline_scan_list_s": round(scan_s, 2), "ratio": round(scan_s / list_s, 1),
                      "tui_refresh_under_load_s": round(load["refresh_s"], 4),
                      "fds_before_600_refreshes": load["fds_before"], "fds_after_600_refreshes": load["fds_after"],
                      "baseline_tui_refresh_new_store_s": round(load["old_refresh_s"], 4),
                      "baseline_fds_gained_50_refreshes": load["old_fds_gained_50"],
                      "ratio_tui_refresh": round(load["old_refresh_s"] / load["refresh_s"], 1),
                      "writer_errors": len(load["writer_errors"])}))


if __name__ == "__main__":
    main()
