"""Scaling-law fit speed: the fit and 1,000 bootstrap resamples of 100 points, 5 sizes N x
5 token counts D x 4 seeds drawn from a known law with 0.5% log-normal noise.

  python benchmarks/scaling_fit.py [--resamples 1000] [--baseline-resamples 20] [--seed 0]

Target: at most 5 s on 2 cores. Baseline in the same process: the naive bootstrap, each
resample fitted as the full fit is, from the grid of initial values (ncalab.scaling.fit_law on
the resample), timed on the first --baseline-resamples resamples and extrapolated to
--resamples. On those resamples it also checks that the fast refit (from the full fit's
parameters) reaches the same optimum as the naive one. The last line is one JSON object.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from ncalab.scaling import Law, bootstrap_law, fit_law
from ncalab.scaling.bootstrap import resample_index
from ncalab.scaling.law import Observations, one_blas_thread

TRUE = Law(E=1.8, A=60.0, alpha=0.30, B=80.0, beta=0.28)  # tiny scale: losses of ~2.6-5.4 nats
TARGET_S = 5.0


def points(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """5 N (1e5-1e7) x 5 D (1e6-1e8) x 4 seeds from TRUE, with 0.5% multiplicative noise."""
    n, d = np.meshgrid(np.geomspace(1e5, 1e7, 5), np.geomspace(1e6, 1e8, 5), indexing="ij")
    n, d = np.repeat(n.ravel(), 4), np.repeat(d.ravel(), 4)
    return n, d, TRUE.loss(n, d) * np.exp(np.random.default_rng(seed).normal(0.0, 0.005, n.size))


def naive(data: tuple[np.ndarray, ...], resamples: int, seed: int) -> tuple[float, list]:
    """Seconds per resample of the naive bootstrap, and its laws, on the same draws as bootstrap_law."""
    obs = Observations.of(*data)
    rng, groups, laws = np.random.default_rng(seed), obs.groups(), []
    t = time.perf_counter()
    with one_blas_thread():
        for _ in range(resamples):
            sample = obs.subset(resample_index(groups, rng))
            laws.append(fit_law(sample.n, sample.d, sample.loss).law)
    return (time.perf_counter() - t) / resamples, laws


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--resamples", type=int, default=1000)
    ap.add_argument("--baseline-resamples", type=int, default=20, help="naive refits timed, then extrapolated")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    data = points(a.seed)
    print(f"{data[0].size} points; fit and {a.resamples:,} bootstrap resamples ...", flush=True)
    t = time.perf_counter()
    boot = bootstrap_law(*data, resamples=a.resamples, seed=a.seed)
    fast_s = time.perf_counter() - t
    print(f"naive baseline on {a.baseline_resamples} resamples ...", flush=True)
    per_resample, laws = naive(data, a.baseline_resamples, a.seed)
    naive_s = per_resample * a.resamples + fast_s / (a.resamples + 1)  # + its full fit, about one refit's worth
    grid = np.meshgrid(np.geomspace(1e5, 1e7, 9), np.geomspace(1e6, 1e8, 9))
    same = max(float(np.max(np.abs(Law(*row).loss(*grid) / law.loss(*grid) - 1)))
               for row, law in zip(boot.params, laws) if not np.isnan(row).any())
    for name, iv in boot.parameter_intervals().items():
        print(f"  {name:<6} {iv.estimate:10.4g}  [{iv.lo:10.4g}, {iv.hi:10.4g}]   true {getattr(TRUE, name):g}")
    print(f"fit + {a.resamples:,} resamples  {fast_s:7.2f} s   "
          f"(target <= {TARGET_S:g}; {boot.failed} resamples failed)")
    print(f"baseline: each resample fitted from the initial grid  {naive_s:7.1f} s   (extrapolated from "
          f"{a.baseline_resamples}; ratio {naive_s / fast_s:,.0f}x)")
    print(f"same optimum: predictions of the fast and the naive refits differ by at most {same:.1e} (relative)")
    print(json.dumps({"points": int(data[0].size), "resamples": a.resamples, "fit_bootstrap_s": round(fast_s, 3),
                      "target_s": TARGET_S, "failed_resamples": boot.failed,
                      "baseline_grid_refit_s": round(naive_s, 1), "ratio": round(naive_s / fast_s, 1),
                      "max_rel_diff_vs_baseline": float(f"{same:.2g}")}))


if __name__ == "__main__":
    main()
