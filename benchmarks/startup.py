"""Start-up: how long a researcher waits for the lab and the quick commands, in fresh processes.

  python benchmarks/startup.py [--repeats 5]

Each figure is the best of --repeats fresh processes (as timeit takes the least time: this
project's 2-core machines are noisy), beside `python -c pass` measured the same way:
  version     `ncalab --version`                          target <= 0.3 s
  runs_list   `ncalab runs list` of a store of 1,000 experiments (the first page it prints)
                                                            target <= 0.5 s
  first_frame the TUI from process start to its first frame (Explore, the default view)
                                                            target <= 0.5 s
and which heavy modules (torch, transformers, numba, matplotlib, sqlalchemy, scipy) each one
imported. The last line is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HEAVY = ("torch", "transformers", "numba", "matplotlib", "sqlalchemy", "scipy", "numpy", "textual")
TARGETS = {"version_s": 0.3, "runs_list_s": 0.5, "first_frame_s": 0.5}

# Runs a command as the `ncalab` script would and reports, at its exit, the heavy modules it
# loaded (on stderr, so the command's output is kept). Its time is the whole process's, taken
# by the parent (psutil's process start time is only as exact as the boot time, a whole second).
COMMAND = r"""
import sys
from ncalab.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("STARTUP " + repr((None, [m for m in %r if m in sys.modules])), file=sys.stderr, flush=True)
"""

# The app's first frame: the wall-clock time it was drawn and the heavy modules loaded by then.
FIRST_FRAME = r"""
import sys, time
from ncalab.tui.app import NcalabApp

class Probe(NcalabApp):
    def on_mount(self):
        super().on_mount()
        self.call_after_refresh(self.done)
    def done(self):
        self.seen = (time.time(), [m for m in %r if m in sys.modules])
        self.exit()

app = Probe(home=sys.argv[1])
app.run(headless=True)
print("STARTUP " + repr(app.seen), file=sys.stderr, flush=True)
"""


def once(code: str, args: list[str], env: dict) -> tuple[float, list[str]]:
    """Seconds from starting the process to its end (a command) or to its first frame (the TUI,
    whose child reports when that was), and the heavy modules loaded by then."""
    start, t0 = time.time(), time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, env=env, check=False)
    took = time.perf_counter() - t0
    line = next((ln for ln in done.stderr.splitlines() if ln.startswith("STARTUP ")), None)
    if line is None:
        raise SystemExit(f"the measured process failed: {(done.stderr.strip() or done.stdout.strip())[-400:]}")
    at, heavy = ast.literal_eval(line[8:])  # our own child's repr of a number (or None) and a list
    return (took if at is None else at - start), heavy


def best(code: str, args: list[str], env: dict, repeats: int) -> tuple[float, list[str]]:
    runs = [once(code, args, env) for _ in range(repeats)]
    return min(t for t, _ in runs), runs[0][1]


def python_pass(repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        times.append(time.perf_counter() - t0)
    return min(times)


def thousand_experiments(home: str) -> None:
    from ncalab.store import RunStore

    with RunStore(home) as store:
        for i in range(1000):
            e = store.create_experiment("code", "tiny", i, {"model": {"d_model": 128}})
            store.set_summary(e.id, {"ppl_nca": 100.0 + i % 7, "ppl_scratch": 95.0, "gain": -0.05, "speedup": None})
            store.finish_experiment(e.id, "completed")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    tmp = tempfile.mkdtemp(prefix="ncalab-startup-")
    try:
        full, empty = os.path.join(tmp, "full"), os.path.join(tmp, "empty")
        thousand_experiments(full)
        env = {**os.environ, "NCALAB_HOME": empty, "COLUMNS": "120"}
        env.pop("NCALAB_STORE", None)
        out = {"python_pass_s": python_pass(args.repeats)}
        figures = {"version": (COMMAND % (HEAVY,), ["--version"]),
                   "runs_list": (COMMAND % (HEAVY,), ["runs", "list", "--home", full]),
                   "first_frame": (FIRST_FRAME % (HEAVY,), [empty])}
        for name, (code, argv) in figures.items():
            took, heavy = best(code, argv, env, args.repeats)
            out[f"{name}_s"], out[f"{name}_imports"] = round(took, 3), heavy
            goal = TARGETS[f"{name}_s"]
            print(f"{name:<12} {took:6.3f} s  (target <= {goal} s: {'met' if took <= goal else 'NOT met'}; "
                  f"{took / out['python_pass_s']:.0f}x python -c pass)  heavy imports: {', '.join(heavy) or 'none'}")
        out["python_pass_s"] = round(out["python_pass_s"], 3)
        print(f"python -c pass {out['python_pass_s']:.3f} s (best of {args.repeats})")
        print(json.dumps(out))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
