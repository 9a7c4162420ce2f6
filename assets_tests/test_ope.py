"""Off-policy estimators: hand-computed values, intervals, errors and a coverage simulation."""

from __future__ import annotations

import math
import time
from dataclasses import FrozenInstanceError
from typing import Any

import numpy as np
import pytest

from looper_pipelines.ope import (
    ESTIMATORS,
    PolicyValue,
    default_tau,
    estimate_policy_lift,
    estimate_policy_value,
    select_tau,
)

Z95 = 1.959963984540054  # standard normal 0.975 quantile

# Four logged rows.
#   row                 1     2     3     4
#   reward r            1     0     1     0
#   logged p            0.5   0.5   0.25  0.8
#   target q            1.0   0.5   0.5   0.0
#   weight w = q / p    2     1     2     0
#   r_hat (logged a)    0.5   0.5   0.5   0.5
#   DM value per row    0.6   0.4   0.5   0.3
R = [1.0, 0.0, 1.0, 0.0]
P = [0.5, 0.5, 0.25, 0.8]
Q = [1.0, 0.5, 0.5, 0.0]
RHAT = [0.5, 0.5, 0.5, 0.5]
DM = [0.6, 0.4, 0.5, 0.3]


def _sample_se(terms: list[float]) -> float:
    """sqrt(sample variance (n - 1 denominator) / n), written out."""
    n = len(terms)
    mean = sum(terms) / n
    var = sum((t - mean) ** 2 for t in terms) / (n - 1)
    return math.sqrt(var / n)


# --------------------------------------------------------------------------- hand values


def test_ips_by_hand() -> None:
    # w * r = [2, 0, 2, 0]; mean = 4 / 4 = 1.0
    # deviations [1, -1, 1, -1]; sample variance = 4 / 3; se = sqrt((4 / 3) / 4) = 0.57735
    pv = estimate_policy_value(R, P, Q, estimator="ips")
    assert pv.value == pytest.approx(1.0)
    assert pv.std_err == pytest.approx(math.sqrt(1.0 / 3.0))
    assert pv.ci_low == pytest.approx(1.0 - Z95 * math.sqrt(1.0 / 3.0))
    assert pv.ci_high == pytest.approx(1.0 + Z95 * math.sqrt(1.0 / 3.0))
    assert pv.n == 4
    assert pv.estimator == "ips"


def test_snips_by_hand() -> None:
    # sum(w * r) = 2 + 0 + 2 + 0 = 4; sum(w) = 2 + 1 + 2 + 0 = 5; value = 4 / 5 = 0.8
    # delta method: influence_i = w_i (r_i - 0.8) / mean(w), mean(w) = 5 / 4 = 1.25
    #   = [2 * 0.2, 1 * -0.8, 2 * 0.2, 0] / 1.25 = [0.32, -0.64, 0.32, 0.0]
    # sample variance = (0.1024 + 0.4096 + 0.1024 + 0) / 3 = 0.2048; se = sqrt(0.2048 / 4)
    pv = estimate_policy_value(R, P, Q)  # snips is the default
    assert pv.estimator == "snips"
    assert pv.value == pytest.approx(0.8)
    se = math.sqrt(0.2048 / 4)
    assert se == pytest.approx(_sample_se([0.32, -0.64, 0.32, 0.0]))
    assert pv.std_err == pytest.approx(se)
    assert (pv.ci_low, pv.ci_high) == pytest.approx((0.8 - Z95 * se, 0.8 + Z95 * se))


def test_dr_by_hand() -> None:
    # dm + w (r - r_hat):
    #   row 1: 0.6 + 2 * (1 - 0.5) = 1.6
    #   row 2: 0.4 + 1 * (0 - 0.5) = -0.1
    #   row 3: 0.5 + 2 * (1 - 0.5) = 1.5
    #   row 4: 0.3 + 0 * (0 - 0.5) = 0.3
    # mean = 3.3 / 4 = 0.825
    pv = estimate_policy_value(R, P, Q, "dr", reward_hat=RHAT, target_reward_hat=DM)
    assert pv.value == pytest.approx(0.825)
    assert pv.std_err == pytest.approx(_sample_se([1.6, -0.1, 1.5, 0.3]))


def test_switch_dr_by_hand() -> None:
    # tau = 1.5 keeps the correction only where w <= 1.5 (rows 2 and 4):
    #   [0.6, 0.4 - 0.5, 0.5, 0.3] = [0.6, -0.1, 0.5, 0.3]; mean = 1.3 / 4 = 0.325
    pv = estimate_policy_value(R, P, Q, "switch_dr", RHAT, DM, tau=1.5)
    assert pv.value == pytest.approx(0.325)
    assert pv.std_err == pytest.approx(_sample_se([0.6, -0.1, 0.5, 0.3]))
    # default tau = max(10 x median, 99th percentile) of the positive weights [2, 1, 2]
    #             = max(10 x 2, 2) = 20 -> nothing is switched, the value is plain DR
    assert default_tau([2.0, 1.0, 2.0, 0.0]) == pytest.approx(20.0)
    assert default_tau([0.0, 0.0]) == math.inf
    pv_default = estimate_policy_value(R, P, Q, "switch_dr", RHAT, DM)
    assert pv_default.value == pytest.approx(0.825)
    # select_tau: the candidates are inf and quantiles of [2, 1, 2], all equal to 2, and
    # tau = 2 switches no row, so it keeps plain DR
    assert select_tau([2.0, 1.0, 2.0, 0.0], R, RHAT, DM) == math.inf
    # tau = inf is plain DR; a tiny tau is the direct method: mean(DM) = 1.8 / 4 = 0.45
    assert estimate_policy_value(R, P, Q, "switch_dr", RHAT, DM, tau=math.inf).value == (
        pytest.approx(0.825)
    )
    assert estimate_policy_value(R, P, Q, "switch_dr", RHAT, DM, tau=1e-9).value == (
        pytest.approx(0.45)
    )


def test_lift_by_hand() -> None:
    # baseline picks each action with 0.5: w_b = 0.5 / p = [1, 1, 2, 0.625]; DM_b = 0.5
    #   dm_b + w_b (r - r_hat) = [0.5 + 0.5, 0.5 - 0.5, 0.5 + 1.0, 0.5 - 0.3125]
    #                          = [1.0, 0.0, 1.5, 0.1875]; mean = 2.6875 / 4 = 0.671875
    # target DR terms [1.6, -0.1, 1.5, 0.3] (above), mean 0.825
    # paired differences [0.6, -0.1, 0.0, 0.1125]; lift = 0.6125 / 4 = 0.153125
    base = [0.5, 0.5, 0.5, 0.5]
    lift = estimate_policy_lift(R, P, Q, base, "dr", RHAT, DM, [0.5] * 4)
    assert lift.value == pytest.approx(0.153125)
    assert lift.std_err == pytest.approx(_sample_se([0.6, -0.1, 0.0, 0.1125]))
    z_lo = lift.value - Z95 * lift.std_err
    assert lift.ci_low == pytest.approx(z_lo)
    # the value is exactly the difference of the two policy values
    v_t = estimate_policy_value(R, P, Q, "dr", RHAT, DM).value
    v_b = estimate_policy_value(R, P, base, "dr", RHAT, [0.5] * 4).value
    assert lift.value == pytest.approx(v_t - v_b)


@pytest.mark.parametrize("estimator", ["ips", "snips"])
def test_lift_without_reward_model(estimator: str) -> None:
    base = [0.5, 0.5, 0.5, 0.5]
    lift = estimate_policy_lift(R, P, Q, base, estimator=estimator)
    v_t = estimate_policy_value(R, P, Q, estimator).value
    v_b = estimate_policy_value(R, P, base, estimator).value
    assert lift.value == pytest.approx(v_t - v_b)
    assert lift.ci_low < lift.value < lift.ci_high


def test_lift_of_a_policy_against_itself_is_zero() -> None:
    lift = estimate_policy_lift(R, P, Q, Q, "dr", RHAT, DM, DM)
    assert lift.value == 0.0
    assert lift.ci_low == 0.0 and lift.ci_high == 0.0


# --------------------------------------------------------------------------- intervals


def test_result_is_frozen_and_typed() -> None:
    pv = estimate_policy_value(R, P, Q)
    assert isinstance(pv, PolicyValue)
    assert all(isinstance(x, float) for x in (pv.value, pv.ci_low, pv.ci_high, pv.std_err))
    with pytest.raises(FrozenInstanceError):
        pv.value = 0.0  # type: ignore[misc]


def test_interval_narrows_with_alpha_and_with_n() -> None:
    rng = np.random.default_rng(1)
    n = 2000
    p = rng.uniform(0.2, 0.8, n)
    q = rng.uniform(0.0, 1.0, n)
    r = rng.binomial(1, 0.4, n).astype(float)
    wide = estimate_policy_value(r, p, q, "ips", alpha=0.01)
    narrow = estimate_policy_value(r, p, q, "ips", alpha=0.2)
    assert wide.ci_low < narrow.ci_low < narrow.value < narrow.ci_high < wide.ci_high
    full = estimate_policy_value(r, p, q, "ips")
    small = estimate_policy_value(r[:200], p[:200], q[:200], "ips")
    # the width shrinks like 1 / sqrt(n): sqrt(2000 / 200) = 3.16
    assert (small.ci_high - small.ci_low) > 2.0 * (full.ci_high - full.ci_low)


def test_inputs_of_other_types_are_accepted() -> None:
    pd = pytest.importorskip("pandas")
    pl = pytest.importorskip("polars")
    ref = estimate_policy_value(R, P, Q)
    assert estimate_policy_value(np.array(R), pd.Series(P), pl.Series(Q)) == ref
    assert estimate_policy_value(np.array(R)[:, None], P, Q) == ref


def test_single_row_has_no_interval() -> None:
    pv = estimate_policy_value([1.0], [0.5], [1.0], "ips")
    assert pv.value == 2.0 and pv.n == 1
    assert math.isnan(pv.ci_low) and math.isnan(pv.ci_high)


def test_bootstrap_agrees_with_normal_interval() -> None:
    rng = np.random.default_rng(2)
    n = 3000
    p = rng.uniform(0.2, 0.8, n)
    q = rng.uniform(0.0, 1.0, n)
    r = rng.normal(1.0, 1.0, n)
    rhat = np.full(n, 0.9)
    for est in ESTIMATORS:
        normal = estimate_policy_value(r, p, q, est, rhat, rhat)
        boot = estimate_policy_value(r, p, q, est, rhat, rhat, ci="bootstrap", n_bootstrap=400)
        assert boot.value == normal.value
        width_n = normal.ci_high - normal.ci_low
        width_b = boot.ci_high - boot.ci_low
        assert 0.8 < width_b / width_n < 1.25, est
        assert abs(boot.ci_low - normal.ci_low) < 0.25 * width_n, est
    lift_n = estimate_policy_lift(r, p, q, 1 - q, "snips")
    lift_b = estimate_policy_lift(r, p, q, 1 - q, "snips", ci="bootstrap", n_bootstrap=400)
    assert 0.8 < (lift_b.ci_high - lift_b.ci_low) / (lift_n.ci_high - lift_n.ci_low) < 1.25


def test_a_million_rows_is_fast() -> None:
    rng = np.random.default_rng(3)
    n = 1_000_000
    p = rng.uniform(0.05, 1.0, n)
    q = rng.uniform(0.0, 1.0, n)
    r = rng.binomial(1, 0.1, n).astype(float)
    rhat = rng.uniform(0.0, 0.2, n)
    for est in ESTIMATORS:
        t0 = time.perf_counter()
        pv = estimate_policy_value(r, p, q, est, rhat, rhat)
        elapsed = time.perf_counter() - t0
        assert pv.n == n
        assert elapsed < 1.0, f"{est} took {elapsed:.2f}s"


# --------------------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"rewards": [1.0, 0.0]}, "lengths differ.*rewards=2"),
        ({"rewards": [], "logged_propensities": [], "target_propensities": []}, "rewards is empty"),
        ({"rewards": [1.0, np.nan, 1.0, 0.0]}, "rewards contains 1 non-finite"),
        ({"target_propensities": [1.0, np.inf, 0.5, 0.0]}, "target_propensities contains"),
        (
            {"logged_propensities": [0.5, 0.0, 0.25, 0.8]},
            r"logged_propensities must lie in \(0, 1\]",
        ),
        (
            {"logged_propensities": [0.5, 1.2, 0.25, 0.8]},
            r"logged_propensities must lie in \(0, 1\]",
        ),
        (
            {"target_propensities": [1.0, -0.1, 0.5, 0.0]},
            r"target_propensities must lie in \[0, 1\]",
        ),
        (
            {"target_propensities": [1.0, 1.5, 0.5, 0.0]},
            r"target_propensities must lie in \[0, 1\]",
        ),
        ({"estimator": "ipw"}, "estimator must be one of ips, snips, dr, switch_dr; got 'ipw'"),
        ({"estimator": "dr"}, "reward_hat is required"),
        ({"estimator": "switch_dr", "reward_hat": RHAT}, "target_reward_hat is required"),
        ({"estimator": "dr", "reward_hat": RHAT, "target_reward_hat": [0.1]}, "lengths differ"),
        ({"alpha": 0.0}, r"alpha must lie in \(0, 1\)"),
        ({"alpha": 1.0}, r"alpha must lie in \(0, 1\)"),
        ({"ci": "exact"}, "ci must be one of normal, bootstrap"),
        (
            {"estimator": "switch_dr", "reward_hat": RHAT, "target_reward_hat": DM, "tau": 0.0},
            "tau",
        ),
        ({"rewards": [[1.0, 0.0], [1.0, 0.0]]}, "rewards must be one-dimensional"),
        ({"target_propensities": [0.0, 0.0, 0.0, 0.0]}, "SNIPS is undefined"),
    ],
)
def test_errors_name_the_argument(kwargs: dict[str, Any], match: str) -> None:
    args: dict[str, Any] = {
        "rewards": R,
        "logged_propensities": P,
        "target_propensities": Q,
    }
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        estimate_policy_value(**args)


def test_lift_errors() -> None:
    with pytest.raises(ValueError, match="baseline_propensities must lie"):
        estimate_policy_lift(R, P, Q, [0.5, 0.5, 2.0, 0.5], "ips")
    with pytest.raises(ValueError, match="baseline_reward_hat is required"):
        estimate_policy_lift(R, P, Q, [0.5] * 4, "dr", RHAT, DM)
    with pytest.raises(ValueError, match=r"lengths differ.*baseline_propensities=3"):
        estimate_policy_lift(R, P, Q, [0.5] * 3, "ips")


# --------------------------------------------------------------------------- simulation

# A contextual bandit with 5 equally likely contexts and 3 actions, Bernoulli rewards.
MU = np.array(  # true mean reward mu[x, a]
    [
        [0.10, 0.30, 0.50],
        [0.60, 0.20, 0.10],
        [0.30, 0.30, 0.70],
        [0.05, 0.50, 0.20],
        [0.40, 0.10, 0.25],
    ]
)
LOGGING = np.array(  # pi_log(a | x): every action has probability >= 0.1
    [
        [0.6, 0.3, 0.1],
        [0.2, 0.4, 0.4],
        [0.5, 0.4, 0.1],
        [0.4, 0.2, 0.4],
        [0.3, 0.3, 0.4],
    ]
)
TARGET = np.array(  # pi_target(a | x): mostly the best action
    [
        [0.05, 0.15, 0.80],
        [0.80, 0.10, 0.10],
        [0.10, 0.10, 0.80],
        [0.10, 0.80, 0.10],
        [0.80, 0.10, 0.10],
    ]
)
BASELINE = np.full((5, 3), 1.0 / 3.0)
# A deliberately biased reward model: DR must stay unbiased because propensities are known.
MU_HAT = np.clip(MU + np.array([0.15, -0.10, 0.05]), 0.0, 1.0)


def _true_value(policy: np.ndarray) -> float:
    return float((policy * MU).sum(axis=1).mean())


def _simulate(rng: np.random.Generator, n: int) -> dict[str, np.ndarray]:
    x = rng.integers(0, 5, n)
    u = rng.random(n)[:, None]
    a = (u > np.cumsum(LOGGING[x], axis=1)).sum(axis=1)
    r = (rng.random(n) < MU[x, a]).astype(float)
    return {
        "r": r,
        "p": LOGGING[x, a],
        "q": TARGET[x, a],
        "b": BASELINE[x, a],
        "rhat": MU_HAT[x, a],
        "dm": (TARGET[x] * MU_HAT[x]).sum(axis=1),
        "dm_b": (BASELINE[x] * MU_HAT[x]).sum(axis=1),
    }


def test_intervals_cover_the_true_value_at_the_stated_rate() -> None:
    truth = _true_value(TARGET)
    true_lift = truth - _true_value(BASELINE)
    reps, n = 300, 400
    rng = np.random.default_rng(20240601)
    hits = {est: 0 for est in ESTIMATORS}
    lift_hits = {est: 0 for est in ESTIMATORS}
    errors = {est: [] for est in ESTIMATORS}
    for _ in range(reps):
        d = _simulate(rng, n)
        for est in ESTIMATORS:
            pv = estimate_policy_value(d["r"], d["p"], d["q"], est, d["rhat"], d["dm"])
            hits[est] += pv.ci_low <= truth <= pv.ci_high
            errors[est].append(pv.value - truth)
            lift = estimate_policy_lift(
                d["r"], d["p"], d["q"], d["b"], est, d["rhat"], d["dm"], d["dm_b"]
            )
            lift_hits[est] += lift.ci_low <= true_lift <= lift.ci_high
    for est in ESTIMATORS:
        coverage = hits[est] / reps
        lift_coverage = lift_hits[est] / reps
        assert 0.88 <= coverage <= 0.99, f"{est}: coverage {coverage:.3f}"
        assert 0.88 <= lift_coverage <= 0.99, f"{est}: lift coverage {lift_coverage:.3f}"
        # the average error is small against the spread of a single estimate
        err = np.asarray(errors[est])
        assert abs(err.mean()) < 3.0 * err.std() / math.sqrt(reps) + 0.005, est
    # with a reasonable reward model, DR is less variable than IPS
    assert np.std(errors["dr"]) < np.std(errors["ips"])


def test_switch_dr_trades_bias_for_variance_under_extreme_weights() -> None:
    # the logging policy rarely takes the action the target always takes: weights up to 50
    rng = np.random.default_rng(5)
    n = 2000
    x = rng.integers(0, 5, n)
    logging = np.array([0.02, 0.49, 0.49])
    a = rng.choice(3, size=n, p=logging)
    r = (rng.random(n) < MU[x, a]).astype(float)
    target = np.array([1.0, 0.0, 0.0])
    q = target[a]
    rhat = MU_HAT[x, a]
    dm = MU_HAT[x, 0]
    dr = estimate_policy_value(r, logging[a], q, "dr", rhat, dm)
    direct = estimate_policy_value(r, logging[a], q, "switch_dr", rhat, dm, tau=10.0)
    assert direct.value == pytest.approx(float(dm.mean()))
    assert direct.std_err < dr.std_err


def test_select_tau_switches_only_when_the_direct_method_looks_unbiased() -> None:
    rng = np.random.default_rng(6)
    n = 20_000
    x = rng.integers(0, 5, n)
    logging = np.array([0.02, 0.49, 0.49])
    a = rng.choice(3, size=n, p=logging)
    r = (rng.random(n) < MU[x, a]).astype(float)
    q = np.array([0.5, 0.25, 0.25])[a]
    w = q / logging[a]  # 25 on action 0, about 0.5 elsewhere
    # an exact reward model: switching the weight-25 rows costs no bias and cuts variance
    dm_exact = (np.array([0.5, 0.25, 0.25]) * MU[x]).sum(axis=1)
    tau = select_tau(w, r, MU[x, a], dm_exact)
    assert tau < 25.0
    switched = estimate_policy_value(r, logging[a], q, "switch_dr", MU[x, a], dm_exact, tau=tau)
    dr = estimate_policy_value(r, logging[a], q, "dr", MU[x, a], dm_exact)
    assert switched.std_err < dr.std_err
    # a badly biased reward model on action 0: the bias is detectable, so no switch
    mu_bad = MU.copy()
    mu_bad[:, 0] += 0.4
    dm_bad = (np.array([0.5, 0.25, 0.25]) * mu_bad[x]).sum(axis=1)
    assert select_tau(w, r, mu_bad[x, a], dm_bad) == math.inf
