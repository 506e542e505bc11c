"""Jobs started together, as a new user starts them: real `ncalab run --detach` jobs through the
queue, and what each one's stage 1 trains per minute against one job alone.

  python benchmarks/jobs_together.py [--seconds 120] [--cases one-store,two-stores,sweep,tui]

Cases, each in fresh temporary stores on a small code corpus: one job alone (the baseline);
two jobs queued in one store at the same instant; two jobs in two stores (two project folders)
at the same instant; a sweep of 4 members with the queue at 2 (`ncalab sweep --max-jobs 2`);
two jobs in one store with the terminal lab open beside them (`ncalab` in a tmux session, on
Explore's live view of NCA rules, at its 8 frames a second). A job's rate in a minute is the median of the stage-1
tokens/s points it stored in that minute; its ratio is that against the alone job's median.
`--seconds` sizes stage 1 to last about that long alone.

The last line is one JSON object with every job's per-minute ratios and `worst`, the lowest
ratio of any job in any minute after its first (target: at least 0.45 with two jobs on two
cores, each at its half share and a little to spare).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
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
RATE = 50000  # stage-1 tokens/s of this job alone on the 2-core development machine, compiled by
# runtime.compile=auto (2026-12-08; 28,000 uncompiled), to size the stage


def corpus(folder: Path) -> Path:
    """A few standard-library packages: real code that tokenizes in a second."""
    src = Path(sysconfig.get_paths()["stdlib"])
    for name in ("json", "email", "http"):
        shutil.copytree(src / name, folder / name, ignore=shutil.ignore_patterns("__pycache__"))
    return folder


NCALAB = [sys.executable, "-c", "from ncalab.cli.main import run; run()"]


def launch(home: Path, data: Path, tokens: int, seed: int) -> str:
    """One job; each of a case gets its own seed, or the second would wait for the first's identical
    stage 1 and take its result (reuse) instead of training beside it."""
    cmd = [*NCALAB, "run", "--detach", "--json", "--home", str(home), "--corpus", str(data), "--seed", str(seed),
           "--set", f"stage1.tokens={tokens}", *(a for s in SETS for a in ("--set", s))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])["experiment_id"]


def launch_sweep(home: Path, data: Path, tokens: int) -> list[str]:
    """A sweep of 4 members (2 learning rates x 2 seeds: no two share a stage 1), queue at 2."""
    cmd = [*NCALAB, "sweep", "--detach", "--json", "--home", str(home), "--corpus", str(data), "--max-jobs", "2",
           "--seeds", "2", "--grid", "stage1.lr=0.0005,0.001", "--set", f"stage1.tokens={tokens}",
           *(a for s in SETS for a in ("--set", s))]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    return list(json.loads(out.strip().splitlines()[-1])["experiments"])


@contextlib.contextmanager
def terminal_lab(home: Path):
    """`ncalab` open in a detached tmux session of 120x40 on its first screen, Explore's live view."""
    session = f"ncalab-bench-{os.getpid()}"
    cmd = " ".join(shlex.quote(a) for a in [*NCALAB, "--home", str(home)])
    subprocess.run(["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", cmd], check=True)
    try:
        time.sleep(3)  # the first frame, and the rule playing
        screen = subprocess.run(["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True, check=False).stdout
        if "Explore" not in screen:
            raise SystemExit(f"the terminal lab did not open:\n{screen}")
        yield
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True, check=False)


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


def case(name: str, homes: list[Path], data: Path, tokens: int, ids: list[str] | None = None) -> list[list[float]]:
    if ids is None:  # jobs of their own, one a home, at the same instant, as a user would start them
        ids = [launch(h, data, tokens, seed) for seed, h in enumerate(homes)]
    for h, i in zip(homes, ids):
        wait(h, i)
    rates = [per_minute(h, i) for h, i in zip(homes, ids)]
    print(f"{name}: " + "; ".join(" ".join(f"{r:,.0f}" for r in job) + " tokens/s" for job in rates), flush=True)
    return rates


CASES = {"one-store": "two jobs, one store", "two-stores": "two jobs, two stores",
         "sweep": "sweep of 4, queue at 2", "tui": "two jobs beside the terminal lab"}


def run_case(name: str, tmp: Path, data: Path, tokens: int) -> list[list[float]]:
    title = CASES[name]
    if name == "one-store":
        return case(title, [tmp / "shared"] * 2, data, tokens)
    if name == "two-stores":
        return case(title, [tmp / "a", tmp / "b"], data, tokens)
    if name == "sweep":
        ids = launch_sweep(tmp / "sweep", data, tokens)
        return case(title, [tmp / "sweep"] * len(ids), data, tokens, ids=ids)
    with terminal_lab(tmp / "tui"):
        return case(title, [tmp / "tui"] * 2, data, tokens)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="stage 1's length alone")
    ap.add_argument("--cases", default=",".join(CASES), help="which cases beside the alone one, comma-separated")
    args = ap.parse_args()
    chosen = [c.strip() for c in args.cases.split(",") if c.strip()]
    if unknown := set(chosen) - set(CASES):
        raise SystemExit(f"unknown case(s) {sorted(unknown)}; known: {', '.join(CASES)}")
    if "tui" in chosen and not shutil.which("tmux"):
        raise SystemExit("the tui case drives the terminal lab in tmux, which is not installed")
    tokens = int(args.seconds * RATE)
    with tempfile.TemporaryDirectory(prefix="ncalab-jobs-") as tmp:
        tmp = Path(tmp)
        data = corpus(tmp / "corpus")
        alone = case("alone", [tmp / "alone"], data, tokens)[0]
        base = statistics.median(alone)
        together = {}
        for name in chosen:
            together[CASES[name]] = run_case(name, tmp, data, tokens)
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
