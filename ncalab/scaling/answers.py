"""A scaling study's answers from its measured points: each arm's law with its bootstrap and
leave-one-out (or the one-line reason it cannot be fitted, and no numbers), and for each source
against each baseline the measured gains and effective data transferred at the grid points,
predictions at asked (N, D) and the crossover.

Bottom layer: numpy, scipy, ncalab.errors and ncalab.scaling only (the display draws from it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ncalab.errors import NcalabError
from ncalab.lazy import np, scipy_stats
from ncalab.scaling.bootstrap import LEVEL, RESAMPLES, Bootstrap, LeaveOneOut, bootstrap_law, leave_one_out
from ncalab.scaling.law import CannotFit, Fit, Law
from ncalab.scaling.transfer import (
    Crossover,
    common_range,
    crossover_interval,
    gain,
    measured_transfer,
    paired_laws,
    transfer,
)

BASELINES = ("scratch", "matched_scale")
ONE_SEED = "one seed: no interval"


class StudyInputError(NcalabError):
    """The study's points, or the arms or points asked about, cannot be answered; one line says why."""


@dataclass(frozen=True)
class StudyPoint:
    """One measured run: its arm, size N (non-embedding parameters), stage-2 tokens D, seed and
    held-out loss (nats per token)."""

    arm: str
    n: float
    d: float
    seed: int
    loss: float


@dataclass(frozen=True)
class Estimate:
    """A number and its interval; ``reason`` says why the number or its interval is missing."""

    value: float | None
    lo: float | None = None
    hi: float | None = None
    reason: str | None = None
    level: float = LEVEL


@dataclass(frozen=True)
class ArmFit:
    """One arm: its points, and either its bootstrap (which holds the full fit) and
    leave-one-out, or the reason it could not be fitted (and then no fitted number at all)."""

    arm: str
    points: tuple[StudyPoint, ...]  # sorted by (N, D, seed)
    bootstrap: Bootstrap | None
    loo: LeaveOneOut | None
    reason: str | None

    @property
    def fitted(self) -> bool:
        return self.bootstrap is not None

    @property
    def fit(self) -> Fit | None:
        return None if self.bootstrap is None else self.bootstrap.fit

    @property
    def n_range(self) -> tuple[float, float]:
        return min(p.n for p in self.points), max(p.n for p in self.points)

    @property
    def d_range(self) -> tuple[float, float]:
        return min(p.d for p in self.points), max(p.d for p in self.points)


@dataclass(frozen=True)
class MeasuredPoint:
    """Source against baseline at one grid point both measured."""

    n: float
    d: float
    seeds: tuple[int, ...]  # the seeds both arms have (the gain is paired over these)
    source_loss: float  # mean over the source's seeds here
    baseline_loss: float  # mean over the baseline's seeds here
    gain: Estimate  # mean paired gain, t-interval over seeds
    transfer: Estimate  # measured D_T in tokens, interval over the baseline's bootstrap laws
    multiple: Estimate  # the same as a multiple of D


@dataclass(frozen=True)
class Comparison:
    source: str
    baseline: str
    points: tuple[MeasuredPoint, ...]
    transfer_reason: str | None  # why there is no measured D_T (the baseline was not fitted)


@dataclass(frozen=True)
class Prediction:
    """The two laws' gain and D_T at one (N, D), with intervals over the paired bootstrap laws."""

    n: float
    d: float
    gain: Estimate
    transfer: Estimate
    multiple: Estimate
    extrapolated: bool  # outside the N or D range both arms were measured on
    n_range: tuple[float, float]
    d_range: tuple[float, float]


@dataclass(frozen=True)
class PairAnswer:
    source: str
    baseline: str
    crossover: Crossover | str  # the reason when it cannot be computed
    predictions: tuple[Prediction, ...]
    comparison: Comparison


@dataclass(frozen=True)
class StudyAnswers:
    fits: dict[str, ArmFit]  # baselines first, then sources
    pairs: tuple[PairAnswer, ...]
    sources: tuple[str, ...]
    baselines: tuple[str, ...]
    ratio: float
    n_max: float
    resamples: int


def _number(value: object, what: str, p: StudyPoint) -> float:
    """``value`` as a positive finite float, or a one-line error naming the point."""
    try:
        x = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        x = math.nan
    if not (math.isfinite(x) and x > 0):
        raise StudyInputError(f"{p.arm!r} at N={p.n!r}, D={p.d!r}, seed {p.seed!r}: {what} must be a positive "
                              f"finite number, got {value!r}")
    return x


def checked_points(points: Iterable[StudyPoint]) -> tuple[StudyPoint, ...]:
    """The points as floats, or a one-line error: none at all, a non-positive or non-finite N,
    D or loss, or two losses for one arm, grid point and seed (which would break the pairing)."""
    out, seen = [], set()
    for p in points:
        q = StudyPoint(str(p.arm), _number(p.n, "N", p), _number(p.d, "D", p), int(p.seed), _number(p.loss, "loss", p))
        key = (q.arm, q.n, q.d, q.seed)
        if key in seen:
            raise StudyInputError(f"{q.arm!r} has two losses at N={q.n:g}, D={q.d:g}, seed {q.seed}")
        seen.add(key)
        out.append(q)
    if not out:
        raise StudyInputError("no study points: nothing to fit or compare")
    return tuple(out)


def arms_of(points: Sequence[StudyPoint]) -> list[str]:
    """The arms in order of first appearance."""
    return list(dict.fromkeys(p.arm for p in points))


def _fit_arm(arm: str, points: tuple[StudyPoint, ...], resamples: int, seed: int) -> ArmFit:
    n, d, loss = (np.array([getattr(p, k) for p in points]) for k in ("n", "d", "loss"))
    try:
        boot = bootstrap_law(n, d, loss, label=arm, resamples=resamples, seed=seed)
    except CannotFit as e:
        return ArmFit(arm, points, None, None, str(e))
    return ArmFit(arm, points, boot, leave_one_out(n, d, loss, label=arm), None)


def fit_arms(points: Iterable[StudyPoint], *, resamples: int = RESAMPLES, seed: int = 0) -> dict[str, ArmFit]:
    """Each arm's bootstrap and leave-one-out, or why it cannot be fitted. Every arm is
    bootstrapped with the same seed and its points sorted by (N, D, seed): on a shared grid,
    resample k then draws the same grid points and the same seeds in every arm, so the arms'
    laws stay paired resample by resample (failed resamples are NaN rows, not dropped)."""
    pts = checked_points(points)
    by_arm = {arm: tuple(sorted((p for p in pts if p.arm == arm), key=lambda p: (p.n, p.d, p.seed)))
              for arm in arms_of(pts)}
    return {arm: _fit_arm(arm, arm_points, resamples, seed) for arm, arm_points in by_arm.items()}


def _percentile(value: float, values: np.ndarray, level: float = LEVEL) -> Estimate:
    """A full-fit value and its percentile interval over resample values (+inf allowed). A
    resample whose law gives no number there (nan: a degenerate law, inf - inf) counts against
    both ends: below every value for the lower end, above every value for the upper one, so
    the interval widens rather than forgetting it."""
    if values.size == 0:
        return Estimate(value, reason="every bootstrap resample failed: no interval", level=level)
    tail = (1.0 - level) / 2.0
    values = np.asarray(values, dtype=float)
    undefined = np.isnan(values)
    lo = np.quantile(np.where(undefined, -np.inf, values), tail, method="inverted_cdf")
    hi = np.quantile(np.where(undefined, np.inf, values), 1.0 - tail, method="inverted_cdf")
    return Estimate(value, float(lo), float(hi), level=level)


def paired_gain(source_losses: Sequence[float], baseline_losses: Sequence[float], level: float = LEVEL) -> Estimate:
    """Mean of the per-seed gains 1 - exp(L_source - L_baseline), with a t-interval over the
    seeds: pairing by seed removes what the seed does to both arms (same data order, same init
    where shared). One seed gives the gain and the reason there is no interval."""
    g = np.asarray(gain(source_losses, baseline_losses), dtype=float).ravel()
    if g.size == 0:
        return Estimate(None, reason="no seed in common: no paired gain", level=level)
    mean = float(g.mean())
    if g.size == 1:
        return Estimate(mean, reason=ONE_SEED, level=level)
    half = float(scipy_stats.t.ppf(0.5 + level / 2.0, g.size - 1) * g.std(ddof=1) / math.sqrt(g.size))
    return Estimate(mean, mean - half, mean + half, level=level)


def paired_p_value(source_losses: Sequence[float], baseline_losses: Sequence[float]) -> float | None:
    """The two-sided p-value of a paired t-test of the source's losses against the baseline's,
    seed by seed (None for fewer than 2 seeds, or seeds that all differ by the same amount)."""
    a, b = np.asarray(source_losses, dtype=float), np.asarray(baseline_losses, dtype=float)
    if a.size < 2 or a.size != b.size or np.ptp(a - b) == 0:
        return None
    return float(scipy_stats.ttest_rel(a, b).pvalue)


def _measured_transfer(boot: Bootstrap, n: float, d: float, losses: np.ndarray,
                       rng: np.random.Generator) -> tuple[Estimate, Estimate]:
    """D_T from the baseline's law inverted at the source's mean measured loss, and as a multiple
    of D. Its interval has both uncertainties: each baseline resample's law is inverted at a
    resample of the source's seeds (with one seed, only the law's)."""
    laws = [law for law in boot.laws() if law is not None]
    means = rng.choice(losses, size=(len(laws), losses.size), replace=True).mean(axis=1)
    with np.errstate(over="ignore"):
        value = float(measured_transfer(boot.fit.law, n, d, float(losses.mean())))
        values = np.array([float(measured_transfer(law, n, d, m)) for law, m in zip(laws, means)])
    return _percentile(value, values), _percentile(value / d, values / d)


def _by_point(points: Sequence[StudyPoint], arm: str) -> dict[tuple[float, float], dict[int, float]]:
    out: dict[tuple[float, float], dict[int, float]] = {}
    for p in points:
        if p.arm == arm:
            out.setdefault((p.n, p.d), {})[p.seed] = p.loss
    return out


def _known(arms: Sequence[str], names: Iterable[str], role: str) -> None:
    for name in names:
        if name not in arms:
            raise StudyInputError(f"unknown {role} arm {name!r}: the study's arms are {', '.join(arms)}")


def compare(points: Iterable[StudyPoint], fits: dict[str, ArmFit], source: str, baseline: str) -> Comparison:
    """The measured answers at every grid point both arms have: the gain paired by seed and the
    measured D_T (only where the baseline arm was fitted; otherwise the reason, once)."""
    pts = checked_points(points)
    _known(arms_of(pts), [source], "source")
    _known(arms_of(pts), [baseline], "baseline")
    src, base = _by_point(pts, source), _by_point(pts, baseline)
    fit = fits.get(baseline)
    reason = None if fit is not None and fit.fitted else (
        f"no D_T: {fit.reason if fit is not None else f'{baseline} was not fitted'}")
    rows, rng = [], np.random.default_rng(0)  # seeded: the same points give the same intervals
    for n, d in sorted(src.keys() & base.keys()):
        s, b = src[(n, d)], base[(n, d)]
        seeds = tuple(sorted(s.keys() & b.keys()))
        losses = np.array([s[k] for k in sorted(s)])
        source_loss = float(losses.mean())
        if reason is None:
            dt, multiple = _measured_transfer(fit.bootstrap, n, d, losses, rng)  # type: ignore[union-attr]
        else:
            dt = multiple = Estimate(None, reason=reason)
        rows.append(MeasuredPoint(n, d, seeds, source_loss, float(np.mean(list(b.values()))),
                                  paired_gain([s[k] for k in seeds], [b[k] for k in seeds]), dt, multiple))
    return Comparison(source, baseline, tuple(rows), reason)


def _arm(fits: dict[str, ArmFit], name: str, role: str) -> ArmFit:
    if name not in fits:
        raise StudyInputError(f"unknown {role} arm {name!r}: the fitted arms are {', '.join(fits)}")
    return fits[name]


def _unfitted(*arms: ArmFit) -> str | None:
    """The first arm's reason for having no law, or None when every arm has one."""
    return next((a.reason or f"{a.arm} was not fitted" for a in arms if not a.fitted), None)


def _checked_at(at: Iterable[tuple[float, float]]) -> list[tuple[float, float]]:
    out = []
    for pair in at:
        try:
            n, d = (float(v) for v in pair)
        except (TypeError, ValueError):
            raise StudyInputError(f"a point to predict at must be (N, D), got {pair!r}") from None
        if not (math.isfinite(n) and math.isfinite(d) and n > 0 and d > 0):
            raise StudyInputError(f"a point to predict at needs a positive finite N and D, got ({n:g}, {d:g})")
        out.append((n, d))
    return out


def _prediction(base: Law, src: Law, pairs: list[tuple[Law, Law]], n: float, d: float) -> tuple[Estimate, ...]:
    """Gain, D_T and D_T / D from the full fits, with percentile intervals over the pairs."""
    with np.errstate(over="ignore"):
        g = _percentile(float(gain(src.loss(n, d), base.loss(n, d))),
                        np.array([float(gain(s.loss(n, d), b.loss(n, d))) for b, s in pairs]))
        values = np.array([float(transfer(b, s, n, d)) for b, s in pairs])
        value = float(transfer(base, src, n, d))
    return g, _percentile(value, values), _percentile(value / d, values / d)


def predict(fits: dict[str, ArmFit], source: str, baseline: str,
            at: Sequence[tuple[float, float]]) -> list[Prediction]:
    """Predicted gain and D_T at each (N, D), each with a 95% interval over the paired bootstrap
    laws, flagged as extrapolated outside the N or D range both arms were measured on. An arm
    without a law gives each prediction the reason instead of numbers."""
    b, s = _arm(fits, baseline, "baseline"), _arm(fits, source, "source")
    points = _checked_at(at)
    n_range, d_range = common_range(b.n_range, s.n_range), common_range(b.d_range, s.d_range)
    reason = _unfitted(s, b)
    pairs = [] if reason else paired_laws(b.bootstrap, s.bootstrap)  # type: ignore[arg-type]
    out = []
    for n, d in points:
        if reason:
            estimates = (Estimate(None, reason=f"no prediction: {reason}"),) * 3
        else:
            estimates = _prediction(b.fit.law, s.fit.law, pairs, n, d)  # type: ignore[union-attr]
        inside = n_range[0] <= n <= n_range[1] and d_range[0] <= d <= d_range[1]
        out.append(Prediction(n, d, *estimates, extrapolated=not inside, n_range=n_range, d_range=d_range))
    return out


def crossover_for(fits: dict[str, ArmFit], source: str, baseline: str, *, ratio: float = 20.0,
                  n_max: float = 1e12) -> Crossover | str:
    """The crossover at D = ratio * N with its paired bootstrap interval, or the reason (a string)
    when either arm has no law."""
    b, s = _arm(fits, baseline, "baseline"), _arm(fits, source, "source")
    reason = _unfitted(s, b)
    if reason:
        return f"no crossover: {reason}"
    return crossover_interval(b.bootstrap, s.bootstrap, ratio=ratio, n_max=n_max)  # type: ignore[arg-type]


def _chosen_arms(arms: list[str], sources: Sequence[str] | None,
                 baselines: Sequence[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The baselines and sources to answer for. The default baselines count where present (a
    study may lack the matched-scale control); a name given explicitly must be an arm."""
    if tuple(baselines) == BASELINES:
        base = tuple(b for b in BASELINES if b in arms)
    else:
        _known(arms, baselines, "baseline")
        base = tuple(dict.fromkeys(baselines))
    if not base:
        raise StudyInputError(f"no baseline arm ({', '.join(baselines)}) among the study's arms: {', '.join(arms)}")
    if sources is None:
        src = tuple(a for a in arms if a not in base)
    else:
        _known(arms, sources, "source")
        src = tuple(dict.fromkeys(sources))
    if not any(s != b for s in src for b in base):
        raise StudyInputError(f"no source arm to compare with {', '.join(base)}: the study's arms are {', '.join(arms)}")
    return src, base


def answers(points: Iterable[StudyPoint], *, sources: Sequence[str] | None = None,
            baselines: Sequence[str] = BASELINES, at: Sequence[tuple[float, float]] = (), ratio: float = 20.0,
            n_max: float = 1e12, resamples: int = RESAMPLES, seed: int = 0) -> StudyAnswers:
    """Every source (each arm that is not a baseline, unless given) against every baseline
    present: the arms' fits, measured gains and D_T, predictions at ``at`` and the crossover.
    Bad input is refused in one line before anything is fitted."""
    pts = checked_points(points)
    src, base = _chosen_arms(arms_of(pts), sources, baselines)
    asked = _checked_at(at)
    if not (ratio > 0 and n_max > 0):
        raise StudyInputError(f"ratio and n_max must be positive, got {ratio:g} and {n_max:g}")
    wanted = set(src) | set(base)
    fitted = fit_arms([p for p in pts if p.arm in wanted], resamples=resamples, seed=seed)
    fits = {arm: fitted[arm] for arm in dict.fromkeys(base + src)}
    pairs = tuple(
        PairAnswer(s, b, crossover_for(fits, s, b, ratio=ratio, n_max=n_max), tuple(predict(fits, s, b, asked)),
                   compare(pts, fits, s, b))
        for s in src for b in base if s != b)
    return StudyAnswers(fits=fits, pairs=pairs, sources=src, baselines=base, ratio=ratio, n_max=n_max,
                        resamples=resamples)


def _plain(x):
    """JSON-safe: numpy scalars as Python ones, infinities and NaN as strings, tuples as lists."""
    if isinstance(x, np.bool_):  # a comparison of numpy numbers (whether a crossover is extrapolated)
        return bool(x)
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_plain(v) for v in x]
    if isinstance(x, (np.floating, float)):
        x = float(x)
        return x if math.isfinite(x) else ("nan" if math.isnan(x) else ("inf" if x > 0 else "-inf"))
    if isinstance(x, np.integer):
        return int(x)
    return x


def _estimate(e: Estimate) -> dict:
    return {"value": e.value, "lo": e.lo, "hi": e.hi, "reason": e.reason}


def _arm_dict(a: ArmFit) -> dict:
    out: dict = {"arm": a.arm, "points": [vars(p) for p in a.points], "reason": a.reason}
    if a.fitted:
        law = a.fit.law  # type: ignore[union-attr]
        try:
            intervals = {k: {"estimate": i.estimate, "lo": i.lo, "hi": i.hi}
                         for k, i in a.bootstrap.parameter_intervals().items()}  # type: ignore[union-attr]
        except CannotFit as e:
            intervals = {"reason": str(e)}
        out.update(law=vars(law), intervals=intervals, grid_points=a.fit.points,  # type: ignore[union-attr]
                   resamples_fitted=len(a.bootstrap.params) - a.bootstrap.failed)  # type: ignore[union-attr]
        if a.loo is not None:
            out["leave_one_out"] = {"rmse_log": a.loo.rmse_log, "mean_abs_relative_error": a.loo.mean_abs_relative_error,
                                    "points": [vars(p) for p in a.loo.points]}
    return out


def as_dict(ans: StudyAnswers) -> dict:
    """The answers as plain JSON data (`--json`): the same numbers the tables show."""
    pairs = []
    for p in ans.pairs:
        cross = {"text": p.crossover} if isinstance(p.crossover, str) else {**vars(p.crossover), "text": p.crossover.text()}
        measured = [{"n": m.n, "d": m.d, "seeds": list(m.seeds), "source_loss": m.source_loss,
                     "baseline_loss": m.baseline_loss, "gain": _estimate(m.gain), "transfer": _estimate(m.transfer),
                     "multiple": _estimate(m.multiple)} for m in p.comparison.points]
        predicted = [{"n": q.n, "d": q.d, "gain": _estimate(q.gain), "transfer": _estimate(q.transfer),
                      "multiple": _estimate(q.multiple), "extrapolated": q.extrapolated, "n_range": q.n_range,
                      "d_range": q.d_range} for q in p.predictions]
        pairs.append({"source": p.source, "baseline": p.baseline, "crossover": cross, "predictions": predicted,
                      "measured": measured, "transfer_reason": p.comparison.transfer_reason})
    return _plain({"ratio": ans.ratio, "n_max": ans.n_max, "resamples": ans.resamples, "sources": ans.sources,
                   "baselines": ans.baselines, "pairs": pairs, "arms": [_arm_dict(a) for a in ans.fits.values()]})
