"""Training tokens/s on a shared CPU: alone, and beside one busy process (the TUI's live view,
a test run, an editor's indexer...), with the thread settings a job could choose; and two
training jobs at once, with the threads the job queue gives each (cores / jobs running,
ncalab.jobs.allocation) and, for comparison, with every core each (what jobs did before).

Each measurement is a fresh child process running ncalab's Trainer on the tiny shape (so the
OpenMP settings read at start-up apply), with the same batches; the busy neighbour is a
pure-Python loop that keeps one core busy. Baseline: the child alone with default threads.

  python benchmarks/contention.py [--steps 30]

The last line is one JSON object: tokens/s per condition and each one's ratio to the baseline;
`ratio_two_jobs` is the slower of two allocated jobs running at once against one job alone
(target: at least 0.45).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

CONDITIONS = {
    # name: (busy neighbour, extra environment, torch threads; 0 = torch's default)
    "alone": (False, {}, 0),
    "alone_passive": (False, {"OMP_WAIT_POLICY": "PASSIVE"}, 0),
    "alone_one_less": (False, {}, -1),
    "shared": (True, {}, 0),
    "shared_passive": (True, {"OMP_WAIT_POLICY": "PASSIVE"}, 0),
    "shared_one_less": (True, {}, -1),
}


def child(steps: int, warmup: int, threads: int) -> None:
    import torch

    sys.path.insert(0, os.path.dirname(__file__))
    from train_throughput import ncalab_tokens_per_s

    from ncalab.config import ModelConfig
    from ncalab.train import device as devices
    from ncalab.train.model import build_model

    if threads:
        torch.set_num_threads(threads)
    devices.tune_glibc_malloc()
    placement = devices.choose("cpu", "auto")
    model = build_model(ModelConfig(n_layer=4, d_model=128, n_head=4), 4096, 256, seed=0)
    g = torch.Generator().manual_seed(0)
    data = torch.randint(0, 4096, (warmup + steps, 16, 257), generator=g)
    tps = ncalab_tokens_per_s(model, data, steps, warmup, placement, False)
    print(json.dumps({"tokens_per_s": tps, "threads": torch.get_num_threads()}))


def measure(name: str, steps: int, warmup: int) -> dict:
    busy, env_extra, threads = CONDITIONS[name]
    cores = os.cpu_count() or 1
    if threads < 0:
        threads = max(1, cores + threads)
    neighbour = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if busy else None
    try:
        time.sleep(0.5 if busy else 0)
        out = subprocess.run([sys.executable, __file__, "--child", "--steps", str(steps), "--warmup", str(warmup),
                              "--threads", str(threads)], env={**os.environ, **env_extra},
                             capture_output=True, text=True, check=True).stdout
    finally:
        if neighbour is not None:
            neighbour.kill()
            neighbour.wait()
    return json.loads(out.strip().splitlines()[-1])


def two_jobs(steps: int, warmup: int, threads: int) -> list[float]:
    """Two training children started together, each with `threads` (0 = torch's default)."""
    cmd = [sys.executable, __file__, "--child", "--steps", str(steps), "--warmup", str(warmup), "--threads", str(threads)]
    procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(2)]
    return [json.loads(p.communicate()[0].strip().splitlines()[-1])["tokens_per_s"] for p in procs]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.steps, args.warmup, args.threads)
        return
    from ncalab.jobs.allocation import cores

    results = {name: measure(name, args.steps, args.warmup) for name in CONDITIONS}
    share = max(1, cores() // 2)
    for name, threads in (("two_jobs", share), ("two_jobs_all_cores", 0)):
        both = two_jobs(args.steps, args.warmup, threads)
        results[name] = {"tokens_per_s": min(both), "threads": threads or cores()}
    base = results["alone"]["tokens_per_s"]
    print(f"tiny model (d=128, 4 layers, batch 16x256) on {os.cpu_count()} cores; neighbour: one busy Python loop")
    for name, r in results.items():
        print(f"  {name:16s} {r['threads']} threads {r['tokens_per_s']:10,.0f} tokens/s   {r['tokens_per_s'] / base:6.2f}x of alone")
    print(json.dumps({name: round(r["tokens_per_s"]) for name, r in results.items()}
                     | {f"ratio_{name}": round(r["tokens_per_s"] / base, 3) for name, r in results.items() if name != "alone"}))


if __name__ == "__main__":
    main()
