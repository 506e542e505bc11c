"""Jobs started together, as a new user starts them: real `ncalab run --detach` jobs through the
queue, and what each one's stage 1 trains per minute against one job alone.

  python benchmarks/jobs_together.py [--seconds 120]

Three cases, each in fresh temporary stores on a small code corpus: one job alone (the
baseline); two jobs queued in one store at the same instant; two jobs in two stores (two
project folders) at the same instant. A job's rate in a minute is the median of the stage-1
tokens/s points it stored in that minute; its ratio is that against the alone job's median.
`--seconds` sizes stage 1 to last about that long alone.

The last line is one JSON object with every job's per-minute ratios and `worst`, the lowest
ratio of any job in any minute after its first (target: at least 0.45 with two jobs on two
cores, each at its half share and a little to spare).
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

SETS = ["model.n_layer=1", "model.d_model=32", "model.n_head=2", "nca.seq_len=128", "stage1.batch_size=8",
        "stage1.val_sequences=8", "stage1.icl_sequences=0", "stage2.tokens=8192", "stage2.seq_len=64",
        "stage2.batch_size=8", "stage2.eval_tokens=2048", "data.vocab_size=512", "data.val_fraction=0.2"]
RATE = 28000  # stage-1 tokens/s of this job alone on the 2-core development machine (2026-12-07), to size the stage


def corpus(folder: Path) -> Path:
    """A few standard-library packages: real code that tokenizes in a second."""
    src = Path(sysconfig.get_paths()["stdlib"])
    for name in ("json", "email", "http"):
        shutil.copytree(src / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


def launch(home: Path, data: Path, tokens: int, seed: int) -> str:
    """One job; each of a case gets its own seed, or the second would wait for the first's identical
    stage 1 and take its result (reuse) instead of training beside it."""
    cmd = [sys.executable, "-c", "from ncalab.cli.main import run; run()", "run", "--detach", "--json",
           "--home", str(home), "--corpus", str(data), "--seed", str(seed), "--set", f"stage1.tokens={tokens}"]
    for s in SETS:
        cmd += ["--set", s]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["experiment_id"]


def wait(home: Path, exp_id: str) -> None:
    from ncalab.store import RunStore

    with RunStore(home) as store:
        while store.get_experiment(exp_id).status not in ("completed", "failed", "cancelled", "lost"):
            time.sleep(2)
        if store.get_experiment(exp_id).status != "completed":
            raise SystemExit(f"{exp_id} ended {store.get_experiment(exp_id).status}: {store.get_experiment(exp_id).error}")


def per_minute(home: Path, exp_id: str) -> list[float]:
    """The median stage-1 tokens/s of each minute of the stage (by the run's own wall clock)."""
    from ncalab.store import RunStore

    with RunStore(home) as store:
        run = next(r for r in store.runs_of(exp_id) if r.kind == "stage1")
        points = store.metrics(run.id, "tokens_per_s")
    minutes: dict[int, list[float]] = {}
    for p in points:
        minutes.setdefault(int(p.wall_time // 60), []).append(p.value)
    return [statistics.median(v) for _, v in sorted(minutes.items())]


def case(name: str, homes: list[Path], data: Path, tokens: int) -> list[list[float]]:
    ids = [launch(h, data, tokens, seed) for seed, h in enumerate(homes)]  # at the same instant, as a user would
    for h, i in zip(homes, ids):
        wait(h, i)
    rates = [per_minute(h, i) for h, i in zip(homes, ids)]
    print(f"{name}: " + "; ".join(" ".join(f"{r:,.0f}" for r in job) + " tokens/s" for job in rates), flush=True)
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="stage 1's length alone")
    args = ap.parse_args()
    tokens = int(args.seconds * RATE)
    with tempfile.TemporaryDirectory(prefix="ncalab-jobs-") as tmp:
        tmp = Path(tmp)
        data = corpus(tmp / "corpus")
        alone = case("alone", [tmp / "alone"], data, tokens)[0]
        base = statistics.median(alone)
        shared = tmp / "shared"
        together = {"one store": case("two jobs, one store", [shared, shared], data, tokens),
                    "two stores": case("two jobs, two stores", [tmp / "a", tmp / "b"], data, tokens)}
    ratios = {name: [[round(r / base, 3) for r in job] for job in jobs] for name, jobs in together.items()}
    worst = min(r for jobs in ratios.values() for job in jobs for r in job[1:] or job)
    for name, jobs in ratios.items():
        for i, job in enumerate(jobs):
            print(f"{name}, job {i + 1}: {' '.join(f'{r:.2f}' for r in job)} x alone, minute by minute")
    print(f"worst minute after the first: {worst:.2f}x alone ({base:,.0f} tokens/s)")
    print(json.dumps({"alone_tokens_per_s": round(base), "alone_per_minute": [round(r) for r in alone],
                      "ratios": ratios, "worst": worst}))


if __name__ == "__main__":
    main()
