"""The law L(N, D) = E + A / N^alpha + B / D^beta and its fit (Chinchilla's approach 3 as
replicated by Besiroglu et al. 2024): Huber loss (delta 1e-3) on log L, L-BFGS from a grid of
initial values, the best converged result kept.

N: non-embedding parameters; D: stage-2 (language) tokens; L: held-out loss in nats/token.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ncalab.errors import NcalabError
from ncalab.lazy import np, scipy_optimize

HUBER_DELTA = 1e-3
PARAMETERS = ("E", "A", "alpha", "B", "beta")
# Besiroglu et al.'s grid of initial values; the vector order is (e, a, alpha, b, beta), e = log E.
INIT_GRID = {"e": (-1.0, -0.5, 0.0, 0.5, 1.0), "a": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
             "alpha": (0.0, 0.5, 1.0, 1.5, 2.0), "b": (0.0, 5.0, 10.0, 15.0, 20.0, 25.0),
             "beta": (0.0, 0.5, 1.0, 1.5, 2.0)}
REFINE = 16  # the best initial values refined by L-BFGS, beside the best of each exponent pair (see _starts)
# scipy's ftol applies to max(|f|, 1), and this objective is ~1e-4 (Huber terms of ~1e-3
# residuals), so looser settings stop on the flat valley floor short of the optimum: at 1e-10
# bootstrap refits left log E off by up to 2x its bootstrap spread, and the spread shrank by a
# third. At 1e-15 the parameters agree to 1e-5 with runs to ftol = gtol = 0.
LBFGS_OPTIONS = {"maxiter": 5000, "ftol": 1e-15, "gtol": 1e-12, "maxls": 50}


@contextmanager
def one_blas_thread() -> Iterator[None]:
    """BLAS on one thread while fitting, where threadpoolctl is installed (optional). L-BFGS-B
    calls BLAS on 5 x 10 matrices: a second OpenBLAS thread only spins, doubling the CPU time,
    and beside a busy core (a training job) it made the fit 2.5-10x slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        yield
        return
    with threadpool_limits(1, user_api="blas"):
        yield


class CannotFit(NcalabError):
    """The law cannot be fitted (or refitted) to these observations; the message says why."""


@dataclass(frozen=True)
class Law:
    """L(N, D) = E + A / N^alpha + B / D^beta; every method takes numpy arrays (broadcast)."""

    E: float
    A: float
    alpha: float
    B: float
    beta: float

    def loss(self, n, d) -> np.ndarray:
        n, d = np.asarray(n, dtype=float), np.asarray(d, dtype=float)
        with np.errstate(over="ignore", invalid="ignore"):  # a degenerate resample's law: inf or nan, not a warning
            return self.E + self.A / n**self.alpha + self.B / d**self.beta

    def floor(self, n) -> np.ndarray:
        """The loss at size N with unlimited data: E + A / N^alpha."""
        with np.errstate(over="ignore", invalid="ignore"):
            return self.E + self.A / np.asarray(n, dtype=float) ** self.alpha

    def tokens_for(self, n, loss) -> np.ndarray:
        """The data D needed at size N to reach ``loss``: (B / (L - E - A/N^alpha))^(1/beta);
        +inf where ``loss`` is at or below the floor E + A/N^alpha (no amount of data gets
        there). Meaningful for beta > 0, the only case where more data lowers the loss."""
        gap = np.asarray(loss, dtype=float) - self.floor(n)
        with np.errstate(divide="ignore", invalid="ignore"):
            d = (self.B / gap) ** (1.0 / self.beta)
        return np.where(gap > 0, d, np.inf)

    def vector(self) -> np.ndarray:
        """The fit's parametrisation (e, a, alpha, b, beta), logs of E, A and B."""
        return np.array([np.log(self.E), np.log(self.A), self.alpha, np.log(self.B), self.beta])

    @classmethod
    def from_vector(cls, x) -> Law:
        e, a, alpha, b, beta = (float(v) for v in x)
        with np.errstate(over="ignore"):
            return cls(E=float(np.exp(e)), A=float(np.exp(a)), alpha=alpha, B=float(np.exp(b)), beta=beta)


@dataclass(frozen=True)
class Fit:
    """A fitted law, what it was fitted to, and the objective it reached."""

    law: Law
    objective: float
    points: int  # distinct (N, D) grid points
    observations: int
    n_range: tuple[float, float]
    d_range: tuple[float, float]


@dataclass(frozen=True)
class Observations:
    """Validated observations: one (N, D, L) per seed and grid point, as float arrays."""

    n: np.ndarray
    d: np.ndarray
    loss: np.ndarray
    label: str = "law"

    @classmethod
    def of(cls, n, d, loss, label: str = "law") -> Observations:
        arrays = [np.atleast_1d(np.asarray(v, dtype=float)).ravel() for v in (n, d, loss)]
        if len({a.size for a in arrays}) != 1:
            raise CannotFit(f"cannot fit {label}: N, D and L have different lengths "
                            f"({', '.join(str(a.size) for a in arrays)})")
        for name, a in zip(("N", "D", "L"), arrays):
            if not np.all(np.isfinite(a) & (a > 0)):
                raise CannotFit(f"cannot fit {label}: every {name} must be a positive finite number")
        return cls(*arrays, label=label)

    def groups(self) -> list[np.ndarray]:
        """The observations' indices at each distinct (N, D) grid point, in sorted order."""
        _, inverse = np.unique(np.stack([self.n, self.d], axis=1), axis=0, return_inverse=True)
        inverse = inverse.ravel()
        return [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]

    def subset(self, index: np.ndarray) -> Observations:
        return Observations(self.n[index], self.d[index], self.loss[index], self.label)

    def check_identifiable(self) -> int:
        """The number of distinct grid points; raises unless the law's 5 parameters can be fitted:
        5 grid points or more, over at least 3 sizes and 3 budgets."""
        points = len(self.groups())
        if points < len(PARAMETERS):
            raise CannotFit(f"cannot fit {self.label}: {points} grid points for {len(PARAMETERS)} parameters")
        # On a grid the data fix only differences between sizes (and between budgets): two sizes
        # give one difference for A and alpha, which then trade off exactly against each other
        # and E, whatever the fit reports. Three of each identify all five parameters.
        for name, a in (("N", self.n), ("D", self.d)):
            count = np.unique(a).size
            if count < 3:
                some = f"one {name} only ({a[0]:.3g})" if count == 1 else f"{count} values of {name} only"
                terms = "A and alpha" if name == "N" else "B and beta"
                raise CannotFit(f"cannot fit {self.label}: {some}; the law needs at least 3, or its {terms} "
                                f"trade off against E")
        return points


def objective(x: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
              delta: float = HUBER_DELTA) -> tuple[float, np.ndarray]:
    """Sum of Huber_delta(predicted log L - observed log L) and its gradient in (e, a, alpha, b, beta);
    predicted log L = logsumexp(a - alpha log N, b - beta log D, e), shifted by its largest term."""
    e, a, alpha, b, beta = x
    t1, t2 = a - alpha * log_n, b - beta * log_d
    top = np.maximum(np.maximum(t1, t2), e)
    p1, p2, p3 = np.exp(t1 - top), np.exp(t2 - top), np.exp(e - top)
    total = p1 + p2 + p3
    r = top + np.log(total) - log_l
    slope = np.minimum(np.maximum(r, -delta), delta)  # Huber'(r)
    # r^2/2 inside delta, delta (|r| - delta/2) outside. Products summed, not `@`: BLAS threads
    # spin on every call and double the CPU time of a fit for nothing.
    value = float((slope * (r - 0.5 * slope)).sum())
    s = slope / total  # d(sum)/d(each exp term) = Huber'(r) * softmax weight
    w1, w2 = p1 * s, p2 * s
    return value, np.array([(p3 * s).sum(), w1.sum(), -(w1 * log_n).sum(), w2.sum(), -(w2 * log_d).sum()])


def objective_many(xs: np.ndarray, log_n: np.ndarray, log_d: np.ndarray, log_l: np.ndarray,
                   delta: float = HUBER_DELTA) -> np.ndarray:
    """The objective at many parameter vectors at once (rows of xs), without gradients."""
    e, a, alpha, b, beta = (xs[:, k : k + 1] for k in range(5))
    pred = np.logaddexp(np.logaddexp(a - alpha * log_n, b - beta * log_d), e)
    r = np.abs(pred - log_l)
    return np.where(r <= delta, 0.5 * r * r, delta * (r - 0.5 * delta)).sum(axis=1)


def grid_starts(inits: dict[str, tuple[float, ...]] = INIT_GRID) -> np.ndarray:
    """Every combination of the grid's initial values, as rows (e, a, alpha, b, beta)."""
    return np.array(list(itertools.product(*(inits[k] for k in ("e", "a", "alpha", "b", "beta")))), dtype=float)


def _starts(starts: np.ndarray, logs: tuple[np.ndarray, ...], delta: float, refine: int) -> np.ndarray:
    """The initial values worth refining: the ``refine`` best by their objective (evaluated for
    the whole grid at once), plus the best of each (alpha, beta) pair, so that every exponent
    basin stays in play. Why this is the optimum that refining all 4,500 finds: from the grid,
    L-BFGS reaches either the global optimum or a worse local one, from the worse starts; on
    synthetic laws the 20 best starts all reached the full grid's optimum (to 2e-14 of the
    objective; 2,859 of the 4,500 did), and the pruned fit matched the full one on six data
    sets (objective to 1e-14; the parameters to 1e-3, the objective being that flat near its
    minimum). tests/test_scaling_law.py checks it against a smaller full grid."""
    if len(starts) <= refine:
        return starts
    values = objective_many(starts, *logs, delta=delta)
    keep = set(np.argsort(values, kind="stable")[:refine].tolist())
    pairs = np.unique(starts[:, [2, 4]], axis=0, return_inverse=True)[1].ravel()
    for p in np.unique(pairs):
        members = np.flatnonzero(pairs == p)
        keep.add(int(members[np.argmin(values[members])]))
    return starts[sorted(keep)]


def fit_from(obs: Observations, starts: np.ndarray, delta: float = HUBER_DELTA,
             refine: int = REFINE) -> Fit:
    """The best converged L-BFGS result from ``starts`` (rows (e, a, alpha, b, beta));
    CannotFit when the observations cannot identify the law or no start converges."""
    points = obs.check_identifiable()
    logs = (np.log(obs.n), np.log(obs.d), np.log(obs.loss))
    # L-BFGS runs on centred logs (a' = a - alpha mean(log N), likewise b'): the same optimum,
    # but a and alpha no longer move together, which halves the iterations and lets it converge
    # to the optimum rather than stop on a flat valley floor short of it.
    centre = np.array([0.0, logs[0].mean(), 0.0, logs[1].mean(), 0.0])
    centred = (logs[0] - centre[1], logs[1] - centre[3], logs[2])
    best = None
    for x0 in _starts(np.atleast_2d(np.asarray(starts, dtype=float)), logs, delta, refine):
        y0 = x0 - centre * x0[[0, 2, 2, 4, 4]]
        res = scipy_optimize.minimize(objective, y0, args=(*centred, delta), jac=True, method="L-BFGS-B", options=LBFGS_OPTIONS)
        if _converged(res) and (best is None or res.fun < best.fun):
            best = res
    if best is None:
        raise CannotFit(f"cannot fit {obs.label}: L-BFGS did not converge from any initial value")
    x = best.x + centre * best.x[[0, 2, 2, 4, 4]]
    return Fit(law=Law.from_vector(x), objective=float(best.fun), points=points, observations=obs.n.size,
               n_range=(float(obs.n.min()), float(obs.n.max())), d_range=(float(obs.d.min()), float(obs.d.max())))


def _converged(res) -> bool:
    """Converged: L-BFGS stopped on its tolerances with finite parameters and finite, positive
    E, A and B (their logs overflow otherwise)."""
    return bool(res.success) and bool(np.all(np.isfinite(res.x))) and bool(np.all(np.abs(res.x[[0, 1, 3]]) < 700))


def fit_law(n, d, loss, *, label: str = "law", inits: dict[str, tuple[float, ...]] = INIT_GRID,
            delta: float = HUBER_DELTA) -> Fit:
    """Fit L(N, D) = E + A/N^alpha + B/D^beta to one observation per (N, D, seed): Huber_delta
    on log L, L-BFGS from the grid ``inits``, best converged result. Raises CannotFit (one line)
    for non-positive values, fewer than 5 distinct (N, D) points, one N or one D only, or no
    converged start."""
    obs = Observations.of(n, d, loss, label)
    with one_blas_thread():
        return fit_from(obs, grid_starts(inits), delta)
