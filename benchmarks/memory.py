"""Peak resident memory of the tiny experiment's job, stage by stage, against 1 GiB.

Starts `ncalab run --preset code` (with any --set, e.g. smaller budgets for a quick check)
as a background job in a temporary store, the job pinned to `--cores` cores, and waits for
it. Each stage's peak is what the job stored (`stage_peak_rss_bytes`); the whole job's peak,
steps between stages included, is what the kernel counted for the job process (its
ru_maxrss, read when it exits: this process started it, so this process collects it).

  python benchmarks/memory.py [--cores 2] [--set stage1.tokens=200000 --set stage2.tokens=300000]

The last line is one JSON object: each stage's peak, the job's peak and whether it is under
the target (1 GiB).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

TARGET = 1 << 30


def run_job(home: Path, sets: list[str]) -> tuple[str, int, int]:
    """(experiment id, the job's exit status, its peak resident bytes)."""
    from ncalab.services.config import resolve_config
    from ncalab.services.launch import How, launch
    from ncalab.store import RunStore

    cfg = resolve_config("code", "tiny", None, sets, home=home)
    store = RunStore(home)
    job = launch(cfg, store, How.BACKGROUND)
    if job.status != "running":
        raise SystemExit(f"the job did not start: {job.status}")
    pid, status, usage = os.wait4(-1, 0)  # the job is this process's only child
    return job.experiment_id, os.waitstatus_to_exitcode(status), usage.ru_maxrss * 1024


def stage_peaks(home: Path, exp_id: str) -> dict[str, float | None]:
    from ncalab.store import RunStore

    store = RunStore(home)
    return {r.kind: store.latest_metrics(r.id).get("stage_peak_rss_bytes") for r in store.runs_of(exp_id)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cores", type=int, default=2, help="cores the job may use (its threads follow)")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE, as `ncalab run --set`")
    ap.add_argument("--home", type=Path, help="the store to use (default: a temporary one)")
    args = ap.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[: args.cores])
    with tempfile.TemporaryDirectory() as tmp:
        home = args.home or Path(tmp) / "h"
        t0 = time.perf_counter()
        exp_id, code, job_peak = run_job(home, args.sets)
        wall = time.perf_counter() - t0
        if code != 0:
            log = (home / "experiments" / exp_id / "job.log").read_text().strip().splitlines()
            raise SystemExit(f"the job failed (exit {code}): {log[-1] if log else 'no log'}")
        stages = stage_peaks(home, exp_id)
    mib = 1 << 20
    print(f"tiny experiment {exp_id}: {wall:.0f} s on {args.cores} cores")
    for kind, peak in stages.items():
        print(f"  {kind:<12} peak resident {peak / mib:8.0f} MiB" if peak else f"  {kind:<12} peak not stored")
    print(f"  the job      peak resident {job_peak / mib:8.0f} MiB   (target under {TARGET / mib:.0f} MiB: "
          f"{'met' if job_peak < TARGET else 'not met'})")
    print(json.dumps({"experiment_id": exp_id, "cores": args.cores, "wall_s": round(wall, 1),
                      "stage_peak_rss_bytes": stages, "job_peak_rss_bytes": job_peak,
                      "under_target": job_peak < TARGET, "sets": args.sets}))


if __name__ == "__main__":
    sys.exit(main())
