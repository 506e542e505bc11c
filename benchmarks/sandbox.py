"""The cost of running model-written programs under operating-system isolation: the same
HumanEval programs (canonical solutions, so each runs its tests to the end) in the sandbox's
inner layer alone and under each isolation this machine offers, in the same process, one at a
time; then the isolated programs spread over the cores, as `ncalab eval` runs them.

  python benchmarks/sandbox.py [--programs 40] [--rounds 3]

The last line is one JSON object: seconds per program for each way, the added milliseconds
per program (target: <= 30) and the parallel speed-up over one at a time.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from concurrent.futures import ThreadPoolExecutor

from ncalab.evaluation import humaneval, isolation
from ncalab.evaluation.sandbox import available, run_python


def per_program(programs: list[str], way: str, rounds: int) -> float:
    """Median over rounds of the mean wall seconds per program, one at a time."""
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for p in programs:
            assert run_python(p, timeout=20, isolation=way).passed
        times.append((time.perf_counter() - t0) / len(programs))
    return statistics.median(times)


def parallel(programs: list[str], way: str, workers: int) -> float:
    t0 = time.perf_counter()
    with ThreadPoolExecutor(workers) as pool:
        assert all(o.passed for o in pool.map(lambda p: run_python(p, timeout=20, isolation=way), programs))
    return (time.perf_counter() - t0) / len(programs)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--programs", type=int, default=40)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    problems = humaneval.load_problems()[: args.programs]
    programs = [humaneval.program(p, p.canonical_solution) for p in problems]
    ways = [isolation.NONE] + [w for w in (isolation.BWRAP, isolation.UNSHARE)
                               if run_python("pass", timeout=20, isolation=w).passed]
    run_python(programs[0], isolation=isolation.NONE)  # warm the page cache
    seconds = {w: per_program(programs, w, args.rounds) for w in ways}
    best = available()
    workers = len(os.sched_getaffinity(0))
    spread = parallel(programs, best, workers)
    for w, s in seconds.items():
        extra = "" if w == isolation.NONE else f"  (+{(s - seconds[isolation.NONE]) * 1e3:.1f} ms)"
        print(f"{w:11s} {s * 1e3:7.1f} ms a program, one at a time{extra}")
    print(f"{best:11s} {spread * 1e3:7.1f} ms a program over {workers} cores "
          f"({seconds[best] / spread:.2f}x one at a time)")
    print(json.dumps({"programs": len(programs), "seconds_per_program": {w: round(s, 5) for w, s in seconds.items()},
                      "added_ms": {w: round((s - seconds[isolation.NONE]) * 1e3, 1) for w, s in seconds.items()
                                   if w != isolation.NONE},
                      "parallel_workers": workers, "parallel_speedup": round(seconds[best] / spread, 2)}))


if __name__ == "__main__":
    main()
