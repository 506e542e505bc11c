"""Effective data transferred (Hernandez et al. 2021, "Scaling Laws for Transfer") between a
scratch arm's law and a warm-started arm's, the gain, and the crossover: the smallest model
size at which the warm start is worth data."""

from __future__ import annotations

from dataclasses import dataclass

from ncalab.lazy import np
from ncalab.scaling.bootstrap import LEVEL, Bootstrap
from ncalab.scaling.law import Law

SEARCH_POINTS = 2000  # log-spaced sizes searched for the first sign change, before bisection
BISECTIONS = 60  # halvings of the bracketing log-N interval: far below float precision of N


def scratch_tokens(scratch: Law, n, loss) -> np.ndarray:
    """D_S(N, L): the stage-2 tokens the scratch arm needs at size N to reach ``loss``;
    +inf where ``loss`` is at or below scratch's asymptote E_S + A_S/N^alpha_S (scratch never
    gets there, whatever its data)."""
    return scratch.tokens_for(n, loss)


def transfer(scratch: Law, warm: Law, n, d) -> np.ndarray:
    """Effective data transferred D_T(N, D) = D_S(N, L_W(N, D)) - D: the extra scratch tokens
    worth the warm start at size N after D tokens. Negative: tokens lost; +inf: the warm arm is
    below scratch's asymptote at N, which no amount of scratch data reaches."""
    d = np.asarray(d, dtype=float)
    return scratch_tokens(scratch, n, warm.loss(n, d)) - d


def transfer_multiple(scratch: Law, warm: Law, n, d) -> np.ndarray:
    """D_T as a multiple of D (1.0: the warm start is worth as much data again as it saw)."""
    return transfer(scratch, warm, n, d) / np.asarray(d, dtype=float)


def measured_transfer(scratch: Law, n, d, loss_warm) -> np.ndarray:
    """D_T from a warm arm's measured loss at (N, D), with the scratch arm's fitted law."""
    return scratch_tokens(scratch, n, loss_warm) - np.asarray(d, dtype=float)


def gain(loss_warm, loss_scratch) -> np.ndarray:
    """The project's gain, 1 - ppl_warm/ppl_scratch = 1 - exp(L_W - L_S) (> 0: the warm start helped)."""
    return 1.0 - np.exp(np.asarray(loss_warm, dtype=float) - np.asarray(loss_scratch, dtype=float))


def crossover(scratch: Law, warm: Law, *, ratio: float, n_min: float, n_max: float) -> float | None:
    """The smallest N in [n_min, n_max] with D_T(N, ratio * N) > 0 (n_min itself when the warm
    arm is already ahead there); None when there is none up to n_max. A log grid finds the
    first sign change, bisection in log N refines it (robust to D_T = +inf, unlike brentq)."""
    sizes = np.geomspace(n_min, n_max, SEARCH_POINTS)
    ahead = transfer(scratch, warm, sizes, ratio * sizes) > 0
    if not ahead.any():
        return None
    first = int(np.argmax(ahead))
    if first == 0:
        return float(n_min)
    lo, hi = np.log(sizes[first - 1]), np.log(sizes[first])
    for _ in range(BISECTIONS):
        mid = 0.5 * (lo + hi)
        if transfer(scratch, warm, np.exp(mid), ratio * np.exp(mid)) > 0:
            hi = mid
        else:
            lo = mid
    return float(np.exp(hi))


@dataclass(frozen=True)
class Crossover:
    """The crossover at D = ratio * N, with its bootstrap interval and how far it is supported."""

    ratio: float
    n_max: float
    estimate: float | None  # from the full fits; None: none up to n_max
    lo: float | None
    hi: float | None  # None: the interval's upper end is beyond n_max
    level: float
    share_none: float  # share of paired resamples with no crossover up to n_max
    resamples: int  # paired resamples where both arms fitted
    supported: bool  # a crossover whose whole interval lies below n_max
    extrapolated: bool  # the reported N (or n_max) lies outside the grid both arms were fitted on
    n_range: tuple[float, float]
    d_range: tuple[float, float]
    n_min: float = 0.0  # the smallest size searched: a crossover there means "ahead from the start"

    def text(self) -> str:
        grid = (f"fitted on N {self.n_range[0]:.3g}-{self.n_range[1]:.3g}, "
                f"D {self.d_range[0]:.3g}-{self.d_range[1]:.3g}")
        where = "extrapolated beyond the grid" if self.extrapolated else "inside the grid"
        if not self.supported:
            return (f"no crossover predicted up to N = {self.n_max:.3g} at D = {self.ratio:g} N "
                    f"({self.share_none:.0%} of {self.resamples} resamples have none; {where}, {grid})")
        if self.estimate <= self.n_min:  # no sign change: ahead at every size searched
            return (f"ahead from the smallest size searched, N = {self.n_min:.3g}, at D = {self.ratio:g} N "
                    f"(crossover at or below it; {self.level:.0%} bootstrap interval [{self.lo:.3g}, {self.hi:.3g}]; "
                    f"{where}, {grid})")
        return (f"crossover at N = {self.estimate:.3g} [{self.lo:.3g}, {self.hi:.3g}] at D = {self.ratio:g} N "
                f"({self.level:.0%} bootstrap interval; {where}, {grid})")


def paired_laws(first: Bootstrap, second: Bootstrap) -> list[tuple[Law, Law]]:
    """The resamples where both arms fitted, paired by index (same seed, same grid: same draw)."""
    return [(a, b) for a, b in zip(first.laws(), second.laws()) if a is not None and b is not None]


def common_range(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    """The part of two fitted ranges (of N, or of D) that both arms cover."""
    return max(a[0], b[0]), min(a[1], b[1])


def crossover_interval(scratch: Bootstrap, warm: Bootstrap, *, ratio: float, n_max: float,
                       n_min: float | None = None, level: float = LEVEL) -> Crossover:
    """The crossover at D = ratio * N from the two full fits, its percentile interval over the
    paired resamples (a resample without one counts as beyond n_max), and whether it is
    supported: a point estimate and an interval whose upper end is below n_max, i.e. at most
    (1 - level)/2 of the resamples without a crossover. ``n_min`` defaults to the smallest N
    both arms were fitted on."""
    n_range = common_range(scratch.fit.n_range, warm.fit.n_range)
    d_range = common_range(scratch.fit.d_range, warm.fit.d_range)
    n_min = n_range[0] if n_min is None else n_min
    search = {"ratio": ratio, "n_min": n_min, "n_max": n_max}
    estimate = crossover(scratch.fit.law, warm.fit.law, **search)
    found = [crossover(s, w, **search) for s, w in paired_laws(scratch, warm)]
    values = np.array([np.inf if x is None else x for x in found])
    tail = (1.0 - level) / 2.0
    lo, hi = (np.quantile(values, [tail, 1.0 - tail], method="inverted_cdf") if values.size
              else (np.inf, np.inf))
    share_none = float(np.isinf(values).mean()) if values.size else 1.0
    at = estimate if estimate is not None else n_max
    extrapolated = not (n_range[0] <= at <= n_range[1] and d_range[0] <= ratio * at <= d_range[1])
    return Crossover(ratio=ratio, n_max=n_max, estimate=estimate, lo=None if np.isinf(lo) else float(lo),
                     hi=None if np.isinf(hi) else float(hi), level=level, share_none=share_none,
                     resamples=int(values.size), supported=estimate is not None and np.isfinite(hi),
                     extrapolated=extrapolated, n_range=n_range, d_range=d_range, n_min=n_min)
