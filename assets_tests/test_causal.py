"""Heterogeneous treatment effects on simulated experiments with a known effect."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from looper_pipelines.causal import (
    LEARNERS,
    CateEstimator,
    fit_cate,
    qini_area,
    qini_curve,
    uplift_by_segment,
)

N = 4000
N_TEST = 2000


def true_effect(x: np.ndarray) -> np.ndarray:
    return 1.0 + 2.0 * x[:, 0]


def simulate(
    n: int, seed: int, propensity: np.ndarray | float = 0.5
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Features U(-1, 1)^4, randomised T, Y = x1 + 0.5 x2^2 + T (1 + 2 x0) + N(0, 1)."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, size=(n, 4))
    p = np.broadcast_to(np.asarray(propensity, dtype=float), (n,))
    t = (rng.random(n) < p).astype(np.int64)
    y = x[:, 1] + 0.5 * x[:, 2] ** 2 + t * true_effect(x) + rng.normal(size=n)
    return x, t, y, true_effect(x)


def rmse(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    x, t, y, _ = simulate(N, seed=1)
    return x, t, y


@pytest.fixture(scope="module")
def test_rows() -> tuple[np.ndarray, np.ndarray]:
    x, _, _, tau = simulate(N_TEST, seed=2)
    return x, tau


@pytest.fixture(scope="module")
def fitted(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> dict[str, CateEstimator]:
    x, t, y = data
    return {name: fit_cate(x, t, y, learner=name, random_state=0) for name in LEARNERS}


@pytest.fixture(scope="module")
def auto(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> CateEstimator:
    x, t, y = data
    return fit_cate(x, t, y, learner="auto", random_state=0)


# --------------------------------------------------------------------------- learners


@pytest.mark.parametrize("name", LEARNERS)
def test_each_learner_recovers_the_effect(
    name: str,
    fitted: dict[str, CateEstimator],
    test_rows: tuple[np.ndarray, np.ndarray],
) -> None:
    x_test, tau = test_rows
    est = fitted[name]
    assert est.learner_name == name
    assert est.selection_scores == {}
    pred = est.effect(x_test)
    assert pred.shape == (N_TEST,)
    assert pred.dtype == np.float64
    # the effect ranges over [-1, 3] (sd 1.15); the noise sd is 1
    assert rmse(pred, tau) < 0.45, f"{name}: RMSE {rmse(pred, tau):.3f}"
    assert np.corrcoef(pred, tau)[0, 1] > 0.9


def test_ate_interval_covers_the_truth(fitted: dict[str, CateEstimator]) -> None:
    # E[1 + 2 x0] = 1 for x0 ~ U(-1, 1); the AIPW estimate does not depend on the learner
    ate, lo, hi = fitted["x_learner"].ate()
    assert lo < 1.0 < hi
    assert lo < ate < hi
    assert 0.05 < hi - lo < 0.3  # se about sqrt(4 * 1 + var(tau)) / sqrt(4000) = 0.036
    ate_90, lo_90, hi_90 = fitted["x_learner"].ate(alpha=0.1)
    assert ate_90 == ate and lo < lo_90 and hi_90 < hi
    assert fitted["t_learner"].ate() == pytest.approx((ate, lo, hi))


def test_ate_over_given_rows(
    fitted: dict[str, CateEstimator], test_rows: tuple[np.ndarray, np.ndarray]
) -> None:
    x_test, _ = test_rows
    est = fitted["causal_forest"]
    ate, lo, hi = est.ate(x_test)
    assert ate == pytest.approx(float(est.effect(x_test).mean()))
    _, lo0, hi0 = est.ate()
    assert hi - lo > hi0 - lo0  # adds the sampling error of the mean over the given rows
    # only rows with x0 > 0: true average effect 1 + 2 * 0.5 = 2
    positive = x_test[x_test[:, 0] > 0]
    assert est.ate(positive)[0] == pytest.approx(2.0, abs=0.2)


def test_auto_selects_on_held_out_data(
    auto: CateEstimator,
    fitted: dict[str, CateEstimator],
    test_rows: tuple[np.ndarray, np.ndarray],
) -> None:
    x_test, tau = test_rows
    scores = auto.selection_scores
    assert set(scores) == set(LEARNERS)
    assert all(math.isfinite(v) for v in scores.values())
    assert auto.learner_name == min(scores, key=lambda k: scores[k])
    errors = {name: rmse(est.effect(x_test), tau) for name, est in fitted.items()}
    best = min(errors.values())
    auto_error = rmse(auto.effect(x_test), tau)
    assert auto_error <= 1.2 * best, f"auto {auto_error:.3f} vs best {best:.3f}: {errors}"
    # the chosen learner refitted on all rows is the same model as fitting it directly
    np.testing.assert_allclose(
        auto.effect(x_test), fitted[auto.learner_name].effect(x_test), rtol=1e-9, atol=1e-9
    )
    # the score separates the clearly worse T-learner from the winner
    assert scores["t_learner"] > scores[auto.learner_name]


def test_auto_with_a_single_holdout_and_few_candidates(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    x, t, y = data
    est = fit_cate(
        x[:2000],
        t[:2000],
        y[:2000],
        selection_folds=1,
        holdout_fraction=0.3,
        candidates=("s_learner", "t_learner"),
        random_state=3,
    )
    assert set(est.selection_scores) == {"s_learner", "t_learner"}
    assert est.learner_name in {"s_learner", "t_learner"}


def test_known_propensity_is_used_by_the_doubly_robust_learners() -> None:
    # confounded assignment: P(T=1 | x) = 0.2 + 0.6 * 1[x1 > 0], logged with each row
    rng = np.random.default_rng(7)
    x = rng.uniform(-1.0, 1.0, size=(3000, 4))
    e = 0.2 + 0.6 * (x[:, 1] > 0)
    t = (rng.random(3000) < e).astype(np.int64)
    y = 2.0 * (x[:, 1] > 0) + t * true_effect(x) + rng.normal(size=3000)
    naive = y[t == 1].mean() - y[t == 0].mean()
    assert naive > 1.5  # confounded: the difference in means is far from the true ATE 1
    x_test, _, _, tau = simulate(2000, seed=8)
    for name in ("dr_learner", "causal_forest"):
        est = fit_cate(x, t, y, learner=name, propensity=e, random_state=0)
        assert rmse(est.effect(x_test), tau) < 0.5, name
        ate, lo, hi = est.ate()
        assert lo < 1.0 < hi, (name, ate, lo, hi)


# --------------------------------------------------------------------------- inputs


def test_treatment_encodings_give_the_same_model(
    data: tuple[np.ndarray, np.ndarray, np.ndarray],
) -> None:
    x, t, y = data
    x, t, y = x[:1500], t[:1500], y[:1500]
    ref = fit_cate(x, t, y, learner="t_learner").effect(x[:50])
    as_bool = fit_cate(x, t.astype(bool), y, learner="t_learner")
    labels = np.where(t == 1, "treatment", "control")
    as_str = fit_cate(x, labels, y, learner="t_learner")
    as_float = fit_cate(x, t * 3.0 + 2.0, y, learner="t_learner")  # 2.0 control, 5.0 treated
    for est in (as_bool, as_str, as_float):
        np.testing.assert_allclose(est.effect(x[:50]), ref)
    assert as_str.treatment_values_ == ("control", "treatment")
    assert as_bool.treatment_values_ == (False, True)


def test_dataframes_are_accepted(data: tuple[np.ndarray, np.ndarray, np.ndarray]) -> None:
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    x, t, y = data
    x, t, y = x[:1500], t[:1500], y[:1500]
    ref = fit_cate(x, t, y, learner="s_learner").effect(x[:20])
    cols = [f"f{i}" for i in range(x.shape[1])]
    est_pd = fit_cate(pd.DataFrame(x, columns=cols), pd.Series(t), pd.Series(y), "s_learner")
    est_pl = fit_cate(pl.DataFrame(x, schema=cols), pl.Series(t), pl.Series(y), "s_learner")
    np.testing.assert_allclose(est_pd.effect(pd.DataFrame(x[:20], columns=cols)), ref)
    np.testing.assert_allclose(est_pl.effect(pl.DataFrame(x[:20], schema=cols)), ref)


def _inputs() -> dict[str, Any]:
    x, t, y, _ = simulate(400, seed=4)
    return {"X": x, "T": t, "Y": y}


def _with(**changes: Any) -> dict[str, Any]:
    args = _inputs()
    args.update(changes)
    return args


def _nan_at(a: np.ndarray, value: float = np.nan) -> np.ndarray:
    out = a.astype(float).copy()
    out.flat[3] = value
    return out


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (_with(T=np.ones(400)), "T must take exactly two distinct values.*got 1"),
        (_with(T=np.arange(400) % 3), "T must take exactly two distinct values.*got 3"),
        (_with(Y=np.zeros(399)), "row counts differ: X=400, T=400, Y=399"),
        (_with(propensity=np.full(10, 0.5)), "row counts differ.*propensity=10"),
        (_with(X=_nan_at(_inputs()["X"])), "X contains 1 non-finite"),
        (_with(Y=_nan_at(_inputs()["Y"], np.inf)), "Y contains 1 non-finite"),
        (_with(T=_nan_at(_inputs()["T"])), "T contains 1 non-finite"),
        (_with(propensity=_nan_at(np.full(400, 0.5))), "propensity contains 1 non-finite"),
        (_with(propensity=np.r_[0.0, np.full(399, 0.5)]), r"propensity must lie strictly inside \(0, 1\)"),
        (_with(propensity=np.r_[1.0, np.full(399, 0.5)]), r"propensity must lie strictly inside \(0, 1\)"),
        (_with(T=np.r_[np.ones(20), np.zeros(380)]), "T has too few rows per arm: 380 control.*20 treated"),
        (_with(learner="r_learner"), "learner must be one of auto, s_learner, t_learner, x_learner, dr_learner, causal_forest; got 'r_learner'"),
        (_with(X=np.zeros((400, 0))), "X is empty"),
        (_with(X=np.zeros((400, 2, 2))), "X must be two-dimensional"),
        (_with(candidates=("s_learner", "magic")), "candidates must be among"),
    ],
)  # fmt: skip
def test_errors_name_the_argument(args: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fit_cate(args.pop("X"), args.pop("T"), args.pop("Y"), **args)


def test_prediction_errors(fitted: dict[str, CateEstimator]) -> None:
    est = fitted["s_learner"]
    with pytest.raises(ValueError, match="X has 3 features; the model was fitted on 4"):
        est.effect(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="X contains 1 non-finite"):
        est.effect(np.array([[0.0, 0.0, np.nan, 0.0]]))
    with pytest.raises(ValueError, match=r"alpha must lie in \(0, 1\)"):
        est.ate(alpha=1.5)


# --------------------------------------------------------------------------- uplift


def test_qini_curve_by_hand() -> None:
    # rows sorted by score: T = [1, 0, 1, 0], Y = [3, 1, 2, 2]
    #   top 1: no control row yet             -> gain 0
    #   top 2: treated 3, control 1           -> 0.5 * (3 - 1)         = 1.0
    #   top 3: treated (3 + 2) / 2, control 1 -> 0.75 * (2.5 - 1)      = 1.125
    #   top 4: treated 2.5, control 1.5       -> 1.0 * (2.5 - 1.5)     = 1.0
    frac, gain = qini_curve([4.0, 3.0, 2.0, 1.0], [1, 0, 1, 0], [3.0, 1.0, 2.0, 2.0])
    np.testing.assert_allclose(frac, [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(gain, [0.0, 0.0, 1.0, 1.125, 1.0])
    # area above the random line phi * 1.0: excess g - phi = [0, -0.25, 0.5, 0.375, 0];
    # trapezoids of width 0.25:
    #   0.25 * ((0 - 0.25) + (-0.25 + 0.5) + (0.5 + 0.375) + (0.375 + 0)) / 2 = 0.15625
    area = qini_area([4.0, 3.0, 2.0, 1.0], [1, 0, 1, 0], [3.0, 1.0, 2.0, 2.0])
    assert area == pytest.approx(0.15625)
    # the row order does not matter, only the scores
    frac2, gain2 = qini_curve([1.0, 2.0, 3.0, 4.0], [0, 1, 0, 1], [2.0, 2.0, 1.0, 3.0])
    np.testing.assert_allclose(gain2, gain)
    np.testing.assert_allclose(frac2, frac)


def test_qini_ties_and_constant_scores() -> None:
    # a constant score ranks nothing: the curve is the random line and the area is zero
    frac, gain = qini_curve([0.0] * 4, [1, 0, 1, 0], [3.0, 1.0, 2.0, 2.0])
    np.testing.assert_allclose(frac, [0.0, 1.0])
    np.testing.assert_allclose(gain, [0.0, 1.0])
    assert qini_area([0.0] * 4, [1, 0, 1, 0], [3.0, 1.0, 2.0, 2.0]) == 0.0


def test_qini_area_prefers_the_true_effect(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], fitted: dict[str, CateEstimator]
) -> None:
    x, t, y = data
    rng = np.random.default_rng(9)
    true_area = qini_area(true_effect(x), t, y)
    random_areas = [qini_area(rng.normal(size=x.shape[0]), t, y) for _ in range(20)]
    assert true_area > 0.2  # maximum for a perfect ranking of tau here is about 0.33
    assert true_area > max(random_areas) + 0.1
    assert abs(float(np.mean(random_areas))) < 0.05
    # estimated effects rank almost as well as the truth; reversed scores rank worst
    assert qini_area(fitted["x_learner"].effect(x), t, y) > 0.8 * true_area
    assert qini_area(-true_effect(x), t, y) < -0.2
    # with known propensities the curve ends at the same difference in means (constant e)
    frac, gain = qini_curve(true_effect(x), t, y, propensity=np.full(x.shape[0], 0.5))
    assert gain[-1] == pytest.approx(y[t == 1].mean() - y[t == 0].mean())
    assert frac[0] == 0.0 and frac[-1] == 1.0


def test_uplift_by_segment(
    data: tuple[np.ndarray, np.ndarray, np.ndarray], fitted: dict[str, CateEstimator]
) -> None:
    pl = pytest.importorskip("polars")
    x, t, y = data
    segments = np.where(x[:, 0] > 0, "high", "low")
    effect = fitted["x_learner"].effect(x)
    table = uplift_by_segment(segments, t, y, effect)
    assert isinstance(table, pl.DataFrame)
    assert table.columns == [
        "segment",
        "n",
        "n_treated",
        "n_control",
        "mean_effect",
        "observed_effect",
        "observed_std_err",
        "observed_ci_low",
        "observed_ci_high",
    ]
    assert table["segment"].to_list() == ["high", "low"]
    assert int(table["n"].sum()) == x.shape[0]
    rows = {r["segment"]: r for r in table.iter_rows(named=True)}
    # true average effects: 2 for x0 > 0 and 0 for x0 <= 0
    for seg, truth in (("high", 2.0), ("low", 0.0)):
        r = rows[seg]
        assert r["mean_effect"] == pytest.approx(truth, abs=0.15)
        assert r["observed_ci_low"] < truth < r["observed_ci_high"]
        m = segments == seg
        diff = y[m & (t == 1)].mean() - y[m & (t == 0)].mean()
        assert r["observed_effect"] == pytest.approx(diff)
        assert r["n_treated"] == int((m & (t == 1)).sum())


def test_uplift_by_segment_by_hand() -> None:
    # segment a: treated [4, 2] (mean 3), control [1] (mean 1) -> observed 2, no std err
    # segment b: treated [5], control [1, 3] (mean 2)          -> observed 3
    table = uplift_by_segment(
        ["a", "a", "a", "b", "b", "b"],
        [1, 1, 0, 1, 0, 0],
        [4.0, 2.0, 1.0, 5.0, 1.0, 3.0],
        [0.5, 1.5, 1.0, 2.0, 2.0, 2.0],
    )
    rows = {r["segment"]: r for r in table.iter_rows(named=True)}
    assert rows["a"]["observed_effect"] == pytest.approx(2.0)
    assert rows["a"]["mean_effect"] == pytest.approx(1.0)
    assert rows["a"]["observed_std_err"] is None
    assert rows["b"]["observed_effect"] == pytest.approx(3.0)
    assert (rows["b"]["n"], rows["b"]["n_treated"], rows["b"]["n_control"]) == (3, 1, 2)


def test_uplift_errors() -> None:
    with pytest.raises(ValueError, match="row counts differ"):
        qini_curve([1.0, 2.0], [0, 1, 1], [1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="T must take exactly two distinct values"):
        qini_area([1.0, 2.0], [1, 1], [1.0, 2.0])
    with pytest.raises(ValueError, match="effect_scores contains 1 non-finite"):
        qini_area([np.nan, 2.0], [0, 1], [1.0, 2.0])
    with pytest.raises(ValueError, match=r"row counts differ.*segments=1"):
        uplift_by_segment(["a"], [0, 1], [1.0, 2.0], [0.0, 0.0])
