"""Uncertainty of a fitted law: bootstrap over seeds and grid points, percentile intervals for
its parameters and for anything computed from it, and leave-one-out over grid points."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ncalab.lazy import np
from ncalab.scaling.law import (
    HUBER_DELTA,
    INIT_GRID,
    PARAMETERS,
    CannotFit,
    Fit,
    Law,
    Observations,
    fit_from,
    grid_starts,
    one_blas_thread,
)

RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Interval:
    """A point estimate (from the full fit) and its percentile interval over the resamples;
    floats, or arrays of one shape when the interval is of an array-valued prediction."""

    estimate: float | np.ndarray
    lo: float | np.ndarray
    hi: float | np.ndarray
    level: float


@dataclass(frozen=True)
class Bootstrap:
    """The full fit and one parameter vector (E, A, alpha, B, beta) per resample, in draw order;
    a row of NaN where that resample's fit failed, so two arms bootstrapped with the same seed
    on the same grid stay paired by index."""

    fit: Fit
    params: np.ndarray  # (resamples, 5)
    label: str

    @property
    def failed(self) -> int:
        return int(np.isnan(self.params).any(axis=1).sum())

    def laws(self) -> list[Law | None]:
        """Each resample's law, None where its fit failed."""
        return [None if np.isnan(p).any() else Law(*map(float, p)) for p in self.params]

    def interval(self, fn: Callable[[Law], object], level: float = LEVEL) -> Interval:
        """Percentile interval of ``fn(law)`` (a float or an array) over the resamples that fitted."""
        values = np.array([np.asarray(fn(law), dtype=float) for law in self.laws() if law is not None])
        if values.size == 0:
            raise CannotFit(f"cannot bootstrap {self.label}: every resample's fit failed")
        tail = (1.0 - level) / 2.0
        lo, hi = np.quantile(values, [tail, 1.0 - tail], axis=0, method="inverted_cdf")
        estimate = np.asarray(fn(self.fit.law), dtype=float)
        if estimate.ndim == 0:
            return Interval(float(estimate), float(lo), float(hi), level)
        return Interval(estimate, lo, hi, level)

    def parameter_intervals(self, level: float = LEVEL) -> dict[str, Interval]:
        return {name: self.interval(lambda law, name=name: getattr(law, name), level) for name in PARAMETERS}


def resample_index(groups: list[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """One resample over grid points and seeds: grid points drawn with replacement, then each
    drawn point's observations (its seeds) drawn with replacement."""
    drawn = rng.integers(len(groups), size=len(groups))
    return np.concatenate([groups[g][rng.integers(groups[g].size, size=groups[g].size)] for g in drawn])


def bootstrap_law(n, d, loss, *, label: str = "law", resamples: int = RESAMPLES,
                  seed: int | np.random.Generator = 0, fit: Fit | None = None) -> Bootstrap:
    """Fit the law (unless ``fit`` is given), then refit it on ``resamples`` resamples over
    seeds and grid points. Each refit starts from the full fit's parameters, not the whole
    initial grid: the resample's optimum lies near the full one, and that is what keeps 1,000
    refits to seconds. Resamples whose fit fails (too few distinct points drawn, no
    convergence) are kept as NaN rows and counted in ``failed``. Same inputs and seed, same result."""
    obs = Observations.of(n, d, loss, label)
    with one_blas_thread():
        fit = fit if fit is not None else fit_from(obs, grid_starts(INIT_GRID))
        rng = np.random.default_rng(seed)
        groups, start = obs.groups(), fit.law.vector()[None, :]
        params = np.full((resamples, len(PARAMETERS)), np.nan)
        for k in range(resamples):
            sample = obs.subset(resample_index(groups, rng))
            try:
                law = fit_from(sample, start, HUBER_DELTA).law
            except CannotFit:
                continue
            params[k] = (law.E, law.A, law.alpha, law.B, law.beta)
    return Bootstrap(fit=fit, params=params, label=label)


@dataclass(frozen=True)
class LeftOut:
    """One grid point left out: the law fitted on the others, predicted there."""

    n: float
    d: float
    observed: float  # mean observed loss over the point's seeds
    predicted: float | None
    error: float | None  # predicted - observed
    relative_error: float | None  # error / observed
    reason: str | None  # why no prediction, when there is none


@dataclass(frozen=True)
class LeaveOneOut:
    points: list[LeftOut]

    @property
    def predicted(self) -> list[LeftOut]:
        return [p for p in self.points if p.predicted is not None]

    @property
    def rmse_log(self) -> float | None:
        """RMSE of log(predicted) - log(mean observed) over the points with a prediction."""
        p = self.predicted
        return float(np.sqrt(np.mean([np.log(x.predicted / x.observed) ** 2 for x in p]))) if p else None

    @property
    def mean_abs_relative_error(self) -> float | None:
        p = self.predicted
        return float(np.mean([abs(x.relative_error) for x in p])) if p else None


def leave_one_out(n, d, loss, *, label: str = "law", inits: dict[str, tuple[float, ...]] = INIT_GRID) -> LeaveOneOut:
    """For each distinct (N, D), fit on the other points (from the whole initial grid, as the
    full fit does) and predict the left-out one; a point whose fit cannot be made says why."""
    obs = Observations.of(n, d, loss, label)
    starts = grid_starts(inits)
    with one_blas_thread():
        return LeaveOneOut([_left_out(obs, group, starts) for group in obs.groups()])


def _left_out(obs: Observations, group: np.ndarray, starts: np.ndarray) -> LeftOut:
    at_n, at_d, observed = float(obs.n[group[0]]), float(obs.d[group[0]]), float(obs.loss[group].mean())
    try:
        law = fit_from(obs.subset(np.setdiff1d(np.arange(obs.n.size), group)), starts).law
    except CannotFit as e:
        return LeftOut(at_n, at_d, observed, None, None, None, str(e))
    predicted = float(law.loss(at_n, at_d))
    error = predicted - observed
    return LeftOut(at_n, at_d, observed, predicted, error, error / observed, None)
