"""Off-policy estimators of a target policy's value from logged bandit feedback.

Every estimator here is a mean of per-row terms (IPS, DR, switch-DR) or a ratio of two
means (SNIPS). Confidence intervals use the normal approximation on the per-row
influence terms; for SNIPS the ratio is linearised (delta method). A percentile
bootstrap over rows is available behind ``ci="bootstrap"``.

Notation, per logged row ``i`` with logged action ``a_i`` and context ``x_i``:

- ``r_i``: observed reward,
- ``p_i = pi_log(a_i | x_i)``: probability that the logging policy took ``a_i``,
- ``q_i = pi_target(a_i | x_i)``: probability that the target policy takes ``a_i``,
- ``w_i = q_i / p_i``: importance weight,
- ``rhat_i = r_hat(x_i, a_i)``: a reward model's prediction for the logged action,
- ``dm_i = sum_a pi_target(a | x_i) * r_hat(x_i, a)``: direct-method value of row ``i``.

Estimators:

- ``ips``: ``mean(w * r)``.
- ``snips``: ``sum(w * r) / sum(w)``.
- ``dr``: ``mean(dm + w * (r - rhat))``.
- ``switch_dr``: ``mean(dm + 1[w <= tau] * w * (r - rhat))``: the importance-weighted
  correction is kept where the weight is at most ``tau`` and the direct method alone is
  used elsewhere (Wang, Agarwal and Dudik, 2017, in the form used by the Open Bandit
  Pipeline). ``tau=None`` uses :func:`default_tau`, which switches only extreme weights;
  :func:`select_tau` picks the threshold with the smallest estimated mean squared error.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from statistics import NormalDist
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

ESTIMATORS: tuple[str, ...] = ("ips", "snips", "dr", "switch_dr")
CI_METHODS: tuple[str, ...] = ("normal", "bootstrap")
TAU_QUANTILES: tuple[float, ...] = (0.5, 0.75, 0.9, 0.95, 0.99)
DEFAULT_TAU_QUANTILE = 0.99
DEFAULT_TAU_MEDIAN_MULTIPLE = 10.0

FloatArray = NDArray[np.float64]


@dataclass(frozen=True)
class PolicyValue:
    """An off-policy estimate with a two-sided ``1 - alpha`` confidence interval.

    ``value``, ``ci_low`` and ``ci_high`` are the estimate and its interval; ``n`` the
    number of logged rows; ``estimator`` the estimator's name (empty when built by
    hand); ``std_err`` the standard error of the normal approximation (also reported
    for bootstrap intervals; NaN when unknown).
    For :func:`estimate_policy_lift` the value is the difference target - baseline.
    """

    value: float
    ci_low: float
    ci_high: float
    n: int
    estimator: str = ""
    std_err: float = float("nan")


# --------------------------------------------------------------------------- validation


def _as_1d(name: str, x: ArrayLike | None) -> FloatArray:
    if x is None:
        raise ValueError(f"{name} is required")
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return arr


def _check_lengths(arrays: dict[str, FloatArray]) -> int:
    lengths = {name: a.shape[0] for name, a in arrays.items()}
    n = next(iter(lengths.values()))
    if any(v != n for v in lengths.values()):
        detail = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"array lengths differ: {detail}")
    return n


def _check_logged(name: str, p: FloatArray) -> None:
    if p.min() <= 0.0 or p.max() > 1.0:
        raise ValueError(f"{name} must lie in (0, 1]; got values in [{p.min():.6g}, {p.max():.6g}]")


def _check_target(name: str, q: FloatArray) -> None:
    if q.min() < 0.0 or q.max() > 1.0:
        raise ValueError(f"{name} must lie in [0, 1]; got values in [{q.min():.6g}, {q.max():.6g}]")


def _check_estimator(estimator: str) -> str:
    if estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {', '.join(ESTIMATORS)}; got {estimator!r}")
    return estimator


def _check_alpha(alpha: float) -> float:
    a = float(alpha)
    if not (0.0 < a < 1.0):
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    return a


def _check_ci(ci: str, n_bootstrap: int) -> None:
    if ci not in CI_METHODS:
        raise ValueError(f"ci must be one of {', '.join(CI_METHODS)}; got {ci!r}")
    if ci == "bootstrap" and int(n_bootstrap) < 2:
        raise ValueError(f"n_bootstrap must be at least 2; got {n_bootstrap!r}")


def _check_tau(tau: float | None) -> None:
    if tau is None:
        return
    try:
        t = float(tau)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"tau must be a positive number (or inf); got {tau!r}") from exc
    if np.isnan(t) or t <= 0.0:
        raise ValueError(f"tau must be a positive number (or inf); got {tau!r}")


def default_tau(weights: ArrayLike) -> float:
    """The switch-DR threshold used when ``tau=None``: only extreme weights are switched.

    ``max(10 * median, 99th percentile)`` of the positive importance weights, so a row
    falls back to the direct method only if its weight is both in the top 1 % and more
    than ten times the typical weight. Zero weights (the target never takes the logged
    action) are left out. Returns ``inf`` (plain DR) when no weight is positive. With
    such a high threshold the bias of the switch stays small and the interval close
    to its nominal level; :func:`select_tau` trades more bias for less variance.
    """
    w = np.asarray(weights, dtype=np.float64)
    positive = w[w > 0]
    if positive.size == 0:
        return float("inf")
    return float(
        max(
            DEFAULT_TAU_MEDIAN_MULTIPLE * np.median(positive),
            np.quantile(positive, DEFAULT_TAU_QUANTILE),
        )
    )


def select_tau(
    weights: ArrayLike,
    rewards: ArrayLike,
    reward_hat: ArrayLike,
    target_reward_hat: ArrayLike,
) -> float:
    """A data-driven switch-DR threshold: the smallest estimated mean squared error.

    Candidates are ``inf`` (plain DR) and the 50/75/90/95/99 % quantiles of the positive
    importance weights (zero weights are left out, so a deterministic target policy does
    not drag the threshold to zero). For each candidate the mean squared error is
    estimated as ``var(terms) / n + max(0, b**2 - var(d) / n)``, where
    ``d_i = 1[w_i > tau] * w_i * (r_i - rhat_i)`` is the correction switch-DR leaves out.
    Because the propensities are known, ``-mean(d)`` is an unbiased estimate of the
    switch's bias and ``b**2 - var(d) / n`` (with ``b = mean(d)``) of its square. Ties go
    to the larger threshold. Pass the result as ``tau``.

    A threshold is thus chosen whenever the variance it saves exceeds the bias the data
    can detect. This lowers the error of the point estimate, but the normal interval
    then ignores the remaining bias and the selection itself: with a biased reward model
    its coverage can be far below the nominal level. Prefer the default for intervals.
    """
    w = np.asarray(weights, dtype=np.float64)
    correction = w * (np.asarray(rewards, dtype=np.float64) - np.asarray(reward_hat))
    dm = np.asarray(target_reward_hat, dtype=np.float64)
    n = w.shape[0]
    positive = w[w > 0]
    if n < 2 or positive.size == 0:
        return float("inf")
    candidates = sorted(set(np.quantile(positive, TAU_QUANTILES).tolist()), reverse=True)
    best_tau = float("inf")
    best_mse = float(np.var(dm + correction, ddof=1) / n)
    for tau in candidates:
        keep = w <= tau
        if keep.all():
            continue
        dropped = np.where(keep, 0.0, correction)
        bias_sq = max(0.0, float(dropped.mean()) ** 2 - float(np.var(dropped, ddof=1)) / n)
        mse = float(np.var(dm + (correction - dropped), ddof=1) / n) + bias_sq
        if mse < best_mse:
            best_tau, best_mse = float(tau), mse
    return best_tau


# --------------------------------------------------------------------------- per-row terms


@dataclass(frozen=True)
class _Terms:
    """Per-row terms of one policy's estimate.

    ``numer`` and ``denom`` give the estimate as ``sum(numer) / sum(denom)``; for the
    mean-type estimators ``denom`` is all ones. ``influence`` is the linearised per-row
    contribution whose sample variance / n is the estimate's variance.
    """

    numer: FloatArray
    denom: FloatArray
    value: float
    influence: FloatArray


def _policy_terms(
    estimator: str,
    rewards: FloatArray,
    logged: FloatArray,
    target: FloatArray,
    reward_hat: FloatArray | None,
    dm: FloatArray | None,
    tau: float | None,
    propensity_name: str,
    dm_name: str,
) -> _Terms:
    w = target / logged
    if estimator == "snips":
        w_sum = float(w.sum())
        if w_sum <= 0.0:
            raise ValueError(
                f"{propensity_name} are zero on every logged action, so SNIPS is "
                "undefined (the importance weights sum to zero)"
            )
        value = float(np.dot(w, rewards) / w_sum)
        influence = w * (rewards - value) / (w_sum / w.shape[0])
        return _Terms(numer=w * rewards, denom=w, value=value, influence=influence)
    if estimator == "ips":
        numer = w * rewards
    else:
        if reward_hat is None:
            raise ValueError(f"reward_hat is required for estimator={estimator!r}")
        if dm is None:
            raise ValueError(f"{dm_name} is required for estimator={estimator!r}")
        correction = w * (rewards - reward_hat)
        if estimator == "switch_dr":
            threshold = default_tau(w) if tau is None else float(tau)
            correction = np.where(w <= threshold, correction, 0.0)
        numer = dm + correction
    value = float(numer.mean())
    return _Terms(numer=numer, denom=np.ones_like(numer), value=value, influence=numer - value)


# --------------------------------------------------------------------------- intervals


def _std_err(influence: FloatArray) -> float:
    n = influence.shape[0]
    if n < 2:
        return float("nan")
    return float(np.std(influence, ddof=1) / np.sqrt(n))


def _normal_interval(value: float, se: float, alpha: float) -> tuple[float, float]:
    if not np.isfinite(se):
        return float("nan"), float("nan")
    z = NormalDist().inv_cdf(1.0 - alpha / 2.0)
    return value - z * se, value + z * se


def _bootstrap_interval(
    statistic: Callable[[NDArray[np.intp]], float],
    n: int,
    alpha: float,
    n_bootstrap: int,
    random_state: int | np.random.Generator | None,
) -> tuple[float, float]:
    """Percentile interval of ``statistic`` over rows resampled with replacement."""
    rng = np.random.default_rng(random_state)
    stats = np.empty(int(n_bootstrap), dtype=np.float64)
    for b in range(stats.shape[0]):
        stats[b] = statistic(rng.integers(0, n, size=n))
    stats = stats[np.isfinite(stats)]
    if stats.size == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(stats, [alpha / 2.0, 1.0 - alpha / 2.0])
    return float(lo), float(hi)


def _ratio_statistic(numer: FloatArray, denom: FloatArray) -> Callable[[NDArray[np.intp]], float]:
    def stat(idx: NDArray[np.intp]) -> float:
        d = float(denom[idx].sum())
        return float(numer[idx].sum() / d) if d > 0 else float("nan")

    return stat


# --------------------------------------------------------------------------- public API


def estimate_policy_value(
    rewards: ArrayLike,
    logged_propensities: ArrayLike,
    target_propensities: ArrayLike,
    estimator: str = "snips",
    reward_hat: ArrayLike | None = None,
    target_reward_hat: ArrayLike | None = None,
    alpha: float = 0.05,
    *,
    tau: float | None = None,
    ci: Literal["normal", "bootstrap"] = "normal",
    n_bootstrap: int = 1000,
    random_state: int | np.random.Generator | None = 0,
) -> PolicyValue:
    """Estimate the expected reward of a target policy from logged data.

    Parameters
    ----------
    rewards:
        Observed reward of each logged row, shape ``(n,)``.
    logged_propensities:
        Probability that the logging policy chose the logged action, in ``(0, 1]``.
    target_propensities:
        Probability that the target policy chooses the logged action, in ``[0, 1]``.
    estimator:
        ``"ips"``, ``"snips"`` (default), ``"dr"`` or ``"switch_dr"``.
    reward_hat:
        Reward model's prediction for the logged action (``dr``, ``switch_dr``).
    target_reward_hat:
        Direct-method value per row, ``sum_a pi_target(a | x) * r_hat(x, a)``
        (``dr``, ``switch_dr``).
    alpha:
        The interval has level ``1 - alpha``.
    tau:
        Switch-DR threshold on the importance weight: rows with weight ``<= tau`` keep
        the importance-weighted correction. ``None`` uses :func:`default_tau`
        (``max(10 x median, 99th percentile)`` of the positive weights); ``inf`` gives
        plain DR; :func:`select_tau` computes a data-driven threshold. Ignored by other
        estimators.
    ci:
        ``"normal"`` (default; normal approximation on per-row influence terms, delta
        method for SNIPS) or ``"bootstrap"`` (percentile bootstrap over rows; slower).
    n_bootstrap, random_state:
        Bootstrap replicates and seed (``ci="bootstrap"`` only).
    """
    _check_estimator(estimator)
    alpha = _check_alpha(alpha)
    _check_ci(ci, n_bootstrap)
    _check_tau(tau)
    arrays = {
        "rewards": _as_1d("rewards", rewards),
        "logged_propensities": _as_1d("logged_propensities", logged_propensities),
        "target_propensities": _as_1d("target_propensities", target_propensities),
    }
    needs_model = estimator in ("dr", "switch_dr")
    if needs_model:
        if reward_hat is None:
            raise ValueError(f"reward_hat is required for estimator={estimator!r}")
        if target_reward_hat is None:
            raise ValueError(f"target_reward_hat is required for estimator={estimator!r}")
        arrays["reward_hat"] = _as_1d("reward_hat", reward_hat)
        arrays["target_reward_hat"] = _as_1d("target_reward_hat", target_reward_hat)
    n = _check_lengths(arrays)
    _check_logged("logged_propensities", arrays["logged_propensities"])
    _check_target("target_propensities", arrays["target_propensities"])

    terms = _policy_terms(
        estimator,
        arrays["rewards"],
        arrays["logged_propensities"],
        arrays["target_propensities"],
        arrays.get("reward_hat"),
        arrays.get("target_reward_hat"),
        tau,
        "target_propensities",
        "target_reward_hat",
    )
    se = _std_err(terms.influence)
    if ci == "bootstrap":
        lo, hi = _bootstrap_interval(
            _ratio_statistic(terms.numer, terms.denom), n, alpha, n_bootstrap, random_state
        )
    else:
        lo, hi = _normal_interval(terms.value, se, alpha)
    return PolicyValue(
        value=terms.value, ci_low=lo, ci_high=hi, n=n, estimator=estimator, std_err=se
    )


def estimate_policy_lift(
    rewards: ArrayLike,
    logged_propensities: ArrayLike,
    target_propensities: ArrayLike,
    baseline_propensities: ArrayLike,
    estimator: str = "dr",
    reward_hat: ArrayLike | None = None,
    target_reward_hat: ArrayLike | None = None,
    baseline_reward_hat: ArrayLike | None = None,
    alpha: float = 0.05,
    *,
    tau: float | None = None,
    ci: Literal["normal", "bootstrap"] = "normal",
    n_bootstrap: int = 1000,
    random_state: int | np.random.Generator | None = 0,
) -> PolicyValue:
    """Estimate ``value(target) - value(baseline)`` on the same logged rows.

    Both policies are evaluated with the same estimator on the same rows, and the
    interval comes from the paired per-row differences of the influence terms, so
    their shared noise cancels. The value equals the difference of the two
    :func:`estimate_policy_value` results.

    ``baseline_propensities`` is the baseline policy's probability of the logged action
    and ``baseline_reward_hat`` its direct-method value per row (``sum_a
    pi_baseline(a | x) * r_hat(x, a)``), needed for ``dr`` and ``switch_dr``;
    ``reward_hat`` is shared. With ``tau=None`` switch-DR selects each policy's own
    threshold; a given ``tau`` applies to both. Other parameters are as in
    :func:`estimate_policy_value`. For promotion, ``ci_low`` is the lower confidence
    bound of the lift.
    """
    _check_estimator(estimator)
    alpha = _check_alpha(alpha)
    _check_ci(ci, n_bootstrap)
    _check_tau(tau)
    arrays = {
        "rewards": _as_1d("rewards", rewards),
        "logged_propensities": _as_1d("logged_propensities", logged_propensities),
        "target_propensities": _as_1d("target_propensities", target_propensities),
        "baseline_propensities": _as_1d("baseline_propensities", baseline_propensities),
    }
    if estimator in ("dr", "switch_dr"):
        for name, arr in (
            ("reward_hat", reward_hat),
            ("target_reward_hat", target_reward_hat),
            ("baseline_reward_hat", baseline_reward_hat),
        ):
            if arr is None:
                raise ValueError(f"{name} is required for estimator={estimator!r}")
            arrays[name] = _as_1d(name, arr)
    n = _check_lengths(arrays)
    _check_logged("logged_propensities", arrays["logged_propensities"])
    _check_target("target_propensities", arrays["target_propensities"])
    _check_target("baseline_propensities", arrays["baseline_propensities"])

    r = arrays["rewards"]
    p = arrays["logged_propensities"]
    rhat = arrays.get("reward_hat")
    t_terms, b_terms = (
        _policy_terms(
            estimator,
            r,
            p,
            arrays[f"{policy}_propensities"],
            rhat,
            arrays.get(f"{policy}_reward_hat"),
            tau,
            propensity_name=f"{policy}_propensities",
            dm_name=f"{policy}_reward_hat",
        )
        for policy in ("target", "baseline")
    )
    value = t_terms.value - b_terms.value
    se = _std_err(t_terms.influence - b_terms.influence)
    if ci == "bootstrap":
        t_stat = _ratio_statistic(t_terms.numer, t_terms.denom)
        b_stat = _ratio_statistic(b_terms.numer, b_terms.denom)
        lo, hi = _bootstrap_interval(
            lambda idx: t_stat(idx) - b_stat(idx), n, alpha, n_bootstrap, random_state
        )
    else:
        lo, hi = _normal_interval(value, se, alpha)
    return PolicyValue(value=value, ci_low=lo, ci_high=hi, n=n, estimator=estimator, std_err=se)
