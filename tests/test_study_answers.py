"""A scaling study's answers (ncalab.scaling.answers) and their tables (ncalab.display.study).

A synthetic study from known laws: 4 sizes N (1e5-1e7) x 4 budgets D (1e6-1e8) x 2 seeds, 0.3%
log-normal noise. scratch follows TRUE; nca is TRUE with B scaled so that L_nca(N, D) =
L_scratch(N, 2 D), so its true D_T is D at every point; worse is TRUE with E + 0.1 (worse
everywhere); matched_scale has 2 x 2 grid points only, too few to fit. Bootstraps use 200
resamples (not the default 1,000) to keep the file short; the study is answered once per module.
"""

import io
import json
import math

import numpy as np
import pytest
from rich.console import Console
from rich.table import Table

from ncalab.display.study import LAWS_TITLE, study_renderables, tokens
from ncalab.errors import NcalabError
from ncalab.scaling import Law
from ncalab.scaling.answers import (
    ONE_SEED, StudyPoint, answers, as_dict, compare, crossover_for, fit_arms, paired_gain, predict,
)

TRUE = Law(E=1.8, A=60.0, alpha=0.30, B=80.0, beta=0.28)
K = 2.0  # the nca arm is worth K times its data: D_T = (K - 1) D
NCA = Law(TRUE.E, TRUE.A, TRUE.alpha, TRUE.B * K**-TRUE.beta, TRUE.beta)
WORSE = Law(TRUE.E + 0.1, TRUE.A, TRUE.alpha, TRUE.B, TRUE.beta)
SIZES, TOKENS = np.geomspace(1e5, 1e7, 4), np.geomspace(1e6, 1e8, 4)
RESAMPLES = 200
INSIDE, BEYOND = (1e6, 1e7), (1e9, 2e10)


def arm_points(arm: str, law: Law, rng: np.random.Generator, sizes=SIZES, budgets=TOKENS, seeds=(0, 1),
               sd: float = 0.003) -> list[StudyPoint]:
    return [StudyPoint(arm, float(n), float(d), s, float(law.loss(n, d) * np.exp(rng.normal(0.0, sd))))
            for n in sizes for d in budgets for s in seeds]


def synthetic_study(rng: np.random.Generator) -> list[StudyPoint]:
    return (arm_points("scratch", TRUE, rng) + arm_points("nca", NCA, rng) + arm_points("worse", WORSE, rng)
            + arm_points("matched_scale", TRUE, rng, sizes=SIZES[:2], budgets=TOKENS[:2]))


@pytest.fixture(scope="module")
def study():
    points = synthetic_study(np.random.default_rng(0))
    return points, answers(points, at=[INSIDE, BEYOND], resamples=RESAMPLES)


def _pair(ans, source, baseline):
    return next(p for p in ans.pairs if (p.source, p.baseline) == (source, baseline))


def render(ans, width: int = 120) -> str:
    console = Console(record=True, width=width, file=io.StringIO())
    for r in study_renderables(ans):
        console.print(r)
    return console.export_text()


def test_the_study_answers_every_source_against_every_baseline(study):
    _, ans = study
    assert ans.baselines == ("scratch", "matched_scale") and ans.sources == ("nca", "worse")
    assert {(p.source, p.baseline) for p in ans.pairs} == {(s, b) for s in ans.sources for b in ans.baselines}
    assert [a.fitted for a in ans.fits.values()] == [True, False, True, True]


def test_measured_transfer_recovers_the_known_data_multiple(study):
    """The 2-seed mean loss carries ~0.2% noise, which moves D_T by up to ~0.15 D per sd at the
    largest D (where B/D^beta is smallest): over 6 draws the worst of the 16 points was off by
    0.15-0.40 D. So: every point within 0.6 D, the median within 0.2 D. The interval holds both
    scratch's bootstrap laws and a resample of the source's seeds; with 2 seeds the latter is a
    coarse picture of the noise, so the test asks that it cover the truth at most points (10)."""
    _, ans = study
    rows = _pair(ans, "nca", "scratch").comparison.points
    assert len(rows) == 16 and all(r.seeds == (0, 1) for r in rows)
    true = np.array([(K - 1) * r.d for r in rows])
    measured = np.array([r.transfer.value for r in rows])
    off = np.abs(measured - true) / np.array([r.d for r in rows])
    assert off.max() < 0.6 and np.median(off) < 0.2
    assert all(r.multiple.value == pytest.approx(r.transfer.value / r.d) for r in rows)
    covered = sum(r.transfer.lo <= t <= r.transfer.hi for r, t in zip(rows, true))
    assert covered >= 10
    assert all(r.gain.value > 0 and r.gain.lo < r.gain.value < r.gain.hi for r in rows)


def test_predicted_transfer_inside_the_grid_is_near_the_truth(study):
    _, ans = study
    inside, beyond = _pair(ans, "nca", "scratch").predictions
    assert (inside.n, inside.d) == INSIDE and not inside.extrapolated
    assert beyond.extrapolated and (inside.n_range, inside.d_range) == ((1e5, 1e7), (1e6, 1e8))
    assert inside.multiple.value == pytest.approx(K - 1, abs=0.25)
    assert inside.transfer.lo <= (K - 1) * INSIDE[1] <= inside.transfer.hi
    assert inside.multiple.lo < inside.multiple.value < inside.multiple.hi
    true_gain = float(1 - np.exp(NCA.loss(*INSIDE) - TRUE.loss(*INSIDE)))
    assert inside.gain.lo <= true_gain <= inside.gain.hi
    cross = _pair(ans, "nca", "scratch").crossover
    assert cross.supported and cross.estimate == pytest.approx(1e5)  # ahead from the smallest size on


def test_a_worse_source_loses_gain_and_tokens(study):
    _, ans = study
    pair = _pair(ans, "worse", "scratch")
    assert all(r.gain.value < 0 for r in pair.comparison.points)  # 2-seed t-intervals are wide: values only
    assert all(-r.d < r.transfer.value < 0 and r.transfer.hi < 0 for r in pair.comparison.points)
    inside = pair.predictions[0]
    assert inside.transfer.value < 0 and inside.transfer.hi < 0 and inside.gain.hi < 0
    assert not pair.crossover.supported


def test_an_arm_with_too_few_points_has_a_reason_and_no_numbers(study):
    points, ans = study
    arm = ans.fits["matched_scale"]
    assert not arm.fitted and arm.bootstrap is None and arm.loo is None and arm.fit is None
    assert "4 grid points for 5 parameters" in arm.reason
    pair = _pair(ans, "nca", "matched_scale")
    assert isinstance(pair.crossover, str) and arm.reason in pair.crossover
    assert all(p.gain.value is None and arm.reason in p.gain.reason for p in pair.predictions)
    c = compare(points, ans.fits, "nca", "matched_scale")
    assert len(c.points) == 4 and arm.reason in c.transfer_reason
    assert all(r.gain.value is not None and r.gain.lo is not None for r in c.points)
    assert all(r.transfer.value is None and r.transfer.reason == c.transfer_reason for r in c.points)


def test_the_tables_show_the_answers_first_and_the_unfitted_arm_raw(study):
    points, ans = study
    text = render(ans)
    assert text.splitlines()[0].startswith("nca vs scratch: ahead from the smallest size searched, N = 1e+05")
    assert "extrapolated beyond the grid (N 1e5-1e7, D 1e6-1e8)" in text
    assert text.index("predicted by the two laws") < text.index(LAWS_TITLE) < text.index("measured (gain")
    assert ans.fits['matched_scale'].reason.startswith("cannot fit matched_scale") and ans.fits['matched_scale'].reason in text
    for p in points:
        if p.arm == "matched_scale":
            assert f"{p.loss:.4f}" in text
    laws = next(r for r in study_renderables(ans) if isinstance(r, Table) and str(r.title).startswith(LAWS_TITLE))
    assert [c.header for c in laws.columns][1:] == ["scratch", "nca", "worse"]
    assert "leave-one-out RMSE of log L" in text


def _tiny(seeds=(0,)):
    """Two arms on a 2 x 2 grid: nothing can be fitted, so nothing is."""
    rng = np.random.default_rng(3)
    return (arm_points("scratch", TRUE, rng, SIZES[:2], TOKENS[:2], seeds)
            + arm_points("nca", NCA, rng, SIZES[:2], TOKENS[:2], seeds))


def test_one_seed_gives_gains_without_intervals():
    points = _tiny()
    ans = answers(points, resamples=RESAMPLES)
    rows = _pair(ans, "nca", "scratch").comparison.points
    assert len(rows) == 4
    for r in rows:
        assert r.gain.value == pytest.approx(1 - math.exp(r.source_loss - r.baseline_loss))
        assert (r.gain.lo, r.gain.hi, r.gain.reason) == (None, None, ONE_SEED)
    text = render(ans)
    assert ONE_SEED in text and "no crossover: cannot fit" in text.splitlines()[0]
    assert LAWS_TITLE not in text


def test_paired_gain_has_a_t_interval():
    g = paired_gain([2.9, 3.0, 3.1], [3.0, 3.05, 3.2])
    per_seed = 1 - np.exp(np.array([-0.1, -0.05, -0.1]))
    half = 4.302652729911275 * per_seed.std(ddof=1) / math.sqrt(3)  # t(0.975, 2 df)
    assert g.value == pytest.approx(per_seed.mean()) and g.hi - g.value == pytest.approx(half)
    assert paired_gain([], []).value is None


def test_unfitted_arms_refuse_predictions_and_crossovers_with_a_reason():
    fits = fit_arms(_tiny(seeds=(0, 1)), resamples=RESAMPLES)
    assert all(not f.fitted and f.reason for f in fits.values())
    assert crossover_for(fits, "nca", "scratch").startswith("no crossover: cannot fit nca")
    (pred,) = predict(fits, "nca", "scratch", [BEYOND])
    assert pred.extrapolated and pred.transfer.value is None and "cannot fit" in pred.transfer.reason


@pytest.mark.parametrize("change, message", [
    ({"sources": ["ghost"]}, "unknown source arm 'ghost'"),
    ({"baselines": ["ghost"]}, "unknown baseline arm 'ghost'"),
    ({"points": []}, "no study points"),
    ({"points": [StudyPoint("scratch", 1e5, 1e6, 0, -1.0)]}, "loss must be a positive finite number"),
    ({"points": [StudyPoint("scratch", 0.0, 1e6, 0, 3.0)]}, "N must be a positive finite number"),
    ({"at": [(1e6, -1.0)]}, "positive finite N and D"),
    ({"baselines": ["nca"], "sources": ["nca"]}, "no source arm to compare"),
])
def test_bad_input_is_refused_in_one_line(change, message, monkeypatch):
    fitted = []
    monkeypatch.setattr("ncalab.scaling.answers.bootstrap_law", lambda *a, **k: fitted.append(1))
    kwargs = {"points": _tiny(), "resamples": RESAMPLES, **change}
    with pytest.raises(NcalabError, match=message) as err:
        answers(kwargs.pop("points"), **kwargs)
    assert "\n" not in str(err.value) and not fitted  # refused before anything was fitted


def test_compare_and_predict_refuse_unknown_arms():
    points = _tiny()
    fits = fit_arms(points, resamples=RESAMPLES)
    with pytest.raises(NcalabError, match="unknown baseline arm 'ghost'"):
        compare(points, fits, "nca", "ghost")
    with pytest.raises(NcalabError, match="unknown source arm 'ghost'"):
        predict(fits, "ghost", "scratch", [INSIDE])


def test_token_counts_are_written_one_way():
    assert [tokens(x) for x in (1.234e9, -4.5e8, 1e5, math.inf, None, 0.0)] == ["1.23e9", "-4.5e8", "1e5", "inf", "-", "0"]


def test_a_resample_with_no_number_widens_the_interval_instead_of_being_forgotten():
    from ncalab.scaling.answers import _percentile

    values = np.linspace(-1.0, 1.0, 100)
    whole = _percentile(0.0, values)
    # 1 undefined resample in 100 lies inside the 2.5% tails: the interval stays finite but widens
    one = _percentile(0.0, np.append(values[:-1], np.nan))
    assert one.lo < whole.lo and one.hi >= whole.hi and math.isfinite(one.lo) and math.isfinite(one.hi)
    # more than the tail's share undefined: neither end can be stated
    many = _percentile(0.0, np.where(np.arange(100) % 10 == 0, np.nan, values))
    assert many.lo == -math.inf and many.hi == math.inf and many.value == 0.0


def test_the_answers_as_json_are_plain_data(study):
    """`study fit --json` writes every answer, crossovers and extrapolation flags included, as
    plain JSON (no numpy scalar may reach the encoder)."""
    _, ans = study
    data = json.loads(json.dumps(as_dict(ans)))
    crossings = [p["crossover"] for p in data["pairs"] if "extrapolated" in p["crossover"]]
    assert crossings and all(type(c["extrapolated"]) is bool for c in crossings)
    assert all(type(q["extrapolated"]) is bool for p in data["pairs"] for q in p["predictions"])
