"""How long `ncalab report` takes, from the command's start to its exit, as a user waits for it.

  python benchmarks/report.py                                   # makes its own store (a few minutes)
  python benchmarks/report.py --home runs --experiment e-... --sweep s-...

Target: under 2 s for a finished experiment and for a 12-member sweep on 2 cores. Without
--home it trains, in a temporary store, one micro experiment and a micro sweep of four sources
x 3 seeds on a slice of the standard library (a report's time does not depend on the model's
size: its curves have a few dozen points). Each report is made in a fresh process, five
times; the median counts. Baseline in the same run: `ncalab --version`, what starting any
ncalab command costs. The last line is one JSON object.
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

MICRO = ["--set", "model.n_layer=1", "--set", "model.d_model=32", "--set", "model.n_head=2",
         "--set", "nca.seq_len=128", "--set", "stage1.tokens=16384", "--set", "stage1.batch_size=8",
         "--set", "stage1.val_sequences=8", "--set", "stage2.tokens=32768", "--set", "stage2.seq_len=64",
         "--set", "stage2.batch_size=8", "--set", "stage2.eval_tokens=4096", "--set", "data.vocab_size=512",
         "--set", "data.val_fraction=0.2", "--set", "stage1.icl_sequences=4"]
STDLIB_FILES = ("argparse.py", "ast.py", "inspect.py", "typing.py", "pathlib.py", "subprocess.py", "threading.py",
                "textwrap.py", "csv.py", "difflib.py", "dataclasses.py", "enum.py", "functools.py", "tokenize.py")
TRIES = 5


def ncalab(*args: str) -> subprocess.CompletedProcess:
    done = subprocess.run([sys.executable, "-m", "ncalab.cli.main", *args], capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"ncalab {' '.join(args[:2])} failed: {(done.stderr.strip().splitlines() or ['?'])[-1]}")
    return done


def make_store(root: Path) -> tuple[Path, str, str]:
    """A store with one finished micro experiment and a finished 12-member micro sweep."""
    corpus = root / "corpus"
    corpus.mkdir()
    for name in STDLIB_FILES:
        shutil.copy(Path(sysconfig.get_paths()["stdlib"]) / name, corpus / name)
    home = root / "runs"
    t = time.perf_counter()
    exp = json.loads(ncalab("run", "--corpus", str(corpus), "--home", str(home), "--json", *MICRO).stdout)
    sweep = json.loads(ncalab("sweep", "--grid", "stage1.source=nca,dyck,shuffle_dyck,text", "--seeds", "3",
                              "--set", f"stage1.corpus={corpus}", "--corpus", str(corpus), "--home", str(home),
                              "--json", *MICRO).stdout)
    print(f"made the store in {time.perf_counter() - t:.0f} s: {home}", file=sys.stderr)
    return home, exp["experiment_id"], sweep["sweep_id"]


def wall(args: list[str]) -> float:
    t = time.perf_counter()
    ncalab(*args)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--home", type=Path, help="a run store (default: make one)")
    ap.add_argument("--experiment", help="a finished experiment of --home")
    ap.add_argument("--sweep", help="a finished sweep of --home")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="ncalab-report-bench-") as tmp:
        if a.home is None:
            home, experiment, sweep = make_store(Path(tmp))
        else:
            home, experiment, sweep = a.home, a.experiment, a.sweep
        out = Path(tmp) / "report.html"
        floor = statistics.median(wall(["--version"]) for _ in range(TRIES))
        rows, result = [], {"baseline_version_s": round(floor, 3)}
        for what, ident in (("experiment", experiment), ("sweep", sweep)):
            if not ident:
                continue
            times = sorted(wall(["report", ident, "--out", str(out), "--home", str(home)]) for _ in range(TRIES))
            size = out.stat().st_size
            result.update({f"{what}_s": round(times[TRIES // 2], 3), f"{what}_worst_s": round(times[-1], 3),
                           f"{what}_kb": round(size / 1024), f"{what}_ratio_to_baseline": round(times[TRIES // 2] / floor, 2)})
            rows.append(f"report of the {what} {ident:<12} {times[TRIES // 2]:5.2f} s (target < 2; slowest of "
                        f"{TRIES}: {times[-1]:.2f} s; {size / 1024:.0f} kB; {times[TRIES // 2] / floor:.1f}x `ncalab --version`)")
    print(f"`ncalab --version` (any command's start)  {floor:5.2f} s")
    print("\n".join(rows))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
