"""Run store speed: list 1,000 experiments and load a 100k-point curve, with 1M points stored.

Baseline in the same process: listing by scanning metric points for each experiment's last
values (what the LatestMetric table and stored summaries avoid).

  python benchmarks/store.py
The last line is one JSON object with list_1000_s and curve_100k_s.
"""

from __future__ import annotations

import json
import tempfile
import time

from ncalab.services.runs import list_rows
from ncalab.store import RunStore


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
    print(json.dumps({"list_1000_s": round(list_s, 4), "curve_100k_s": round(curve_s, 4),
                      "baseline_scan_list_s": round(scan_s, 2), "ratio": round(scan_s / list_s, 1)}))


if __name__ == "__main__":
    main()
