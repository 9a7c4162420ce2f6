"""How well effect scores rank rows: Qini / uplift curves and effects by segment.

Curve definition (per-capita cumulative gain). Sort rows by score, highest first. For
the top fraction ``phi`` of rows, the curve's value is::

    g(phi) = phi * (mean outcome of treated rows in the top - mean of control rows in the top)

the average gain per row of the whole population from treating only the top ``phi``
(an observed difference in means inside the top part). It starts at ``g(0) = 0`` and
ends at the overall difference in means ``g(1)``; scoring rows at random gives, in
expectation, the straight line ``phi * g(1)``. With known assignment probabilities the
arm means are inverse-propensity weighted (treated rows by ``1 / e``, control rows by
``1 / (1 - e)``), which reduces to plain means when ``e`` is constant.

Rows with tied scores enter together: the curve has one point per distinct score.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Any

import numpy as np
import polars as pl
from numpy.typing import ArrayLike, NDArray

from looper_pipelines.causal.cate import as_finite_vector, encode_treatment

FloatArray = NDArray[np.float64]


def _curve_inputs(
    effect_scores: ArrayLike, T: ArrayLike, Y: ArrayLike, propensity: ArrayLike | None
) -> tuple[FloatArray, NDArray[np.int64], FloatArray, FloatArray]:
    s = as_finite_vector(effect_scores, "effect_scores")
    y = as_finite_vector(Y, "Y")
    t, _ = encode_treatment(T)
    lengths = {"effect_scores": s.shape[0], "T": t.shape[0], "Y": y.shape[0]}
    if propensity is None:
        e = np.full(s.shape[0], 0.5)
    else:
        e = as_finite_vector(propensity, "propensity")
        lengths["propensity"] = e.shape[0]
    if len(set(lengths.values())) != 1:
        detail = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"row counts differ: {detail}")
    if e.min() <= 0.0 or e.max() >= 1.0:
        raise ValueError("propensity must lie strictly inside (0, 1)")
    return s, t, y, e


def qini_curve(
    effect_scores: ArrayLike,
    T: ArrayLike,
    Y: ArrayLike,
    propensity: ArrayLike | None = None,
) -> tuple[FloatArray, FloatArray]:
    """``(fractions, qini_values)`` of the per-capita cumulative gain curve.

    ``fractions`` runs from 0 to 1 (one point per distinct score, plus the origin);
    ``qini_values[k]`` is the average gain per row from treating the top
    ``fractions[k]`` of rows by score (see the module docstring). Within the top part,
    an arm with no rows yet contributes a difference of zero.
    """
    s, t, y, e = _curve_inputs(effect_scores, T, Y, propensity)
    n = s.shape[0]
    order = np.argsort(-s, kind="stable")
    s, t, y, e = s[order], t[order], y[order], e[order]
    w_t = np.where(t == 1, 1.0 / e, 0.0)
    w_c = np.where(t == 0, 1.0 / (1.0 - e), 0.0)
    cum_wt, cum_wc = np.cumsum(w_t), np.cumsum(w_c)
    cum_yt, cum_yc = np.cumsum(w_t * y), np.cumsum(w_c * y)
    # the last row of each group of tied scores
    ends = np.flatnonzero(np.r_[s[1:] != s[:-1], True])
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_t = np.where(cum_wt[ends] > 0, cum_yt[ends] / cum_wt[ends], 0.0)
        mean_c = np.where(cum_wc[ends] > 0, cum_yc[ends] / cum_wc[ends], 0.0)
    both = (cum_wt[ends] > 0) & (cum_wc[ends] > 0)
    frac = (ends + 1) / n
    gain = np.where(both, frac * (mean_t - mean_c), 0.0)
    return np.r_[0.0, frac], np.r_[0.0, gain]


def qini_area(
    effect_scores: ArrayLike,
    T: ArrayLike,
    Y: ArrayLike,
    propensity: ArrayLike | None = None,
) -> float:
    """Area between the Qini curve and the random-targeting line.

    ``integral_0^1 (g(phi) - phi * g(1)) dphi`` by the trapezoid rule, in outcome units
    per row (the x-axis is the fraction of rows, the y-axis the per-capita gain), so it
    is comparable across data sets of different size. Positive: the scores put rows
    with larger effects first; about zero for random scores.
    """
    frac, gain = qini_curve(effect_scores, T, Y, propensity)
    excess = gain - frac * gain[-1]
    return float(np.sum((excess[1:] + excess[:-1]) * np.diff(frac)) / 2.0)


def _weighted_mean_and_var(y: FloatArray, w: FloatArray) -> tuple[float, float]:
    """Weighted mean and the variance of that (ratio) mean, linearised."""
    total = float(w.sum())
    if total <= 0:
        return float("nan"), float("nan")
    mean = float(np.dot(w, y) / total)
    if y.shape[0] < 2:
        return mean, float("nan")
    m = y.shape[0]
    var = float(np.sum((w * (y - mean)) ** 2) / total**2) * m / (m - 1)
    return mean, var


def uplift_by_segment(
    segments: ArrayLike | Any,
    T: ArrayLike,
    Y: ArrayLike,
    effect: ArrayLike,
    propensity: ArrayLike | None = None,
    alpha: float = 0.05,
) -> pl.DataFrame:
    """Estimated and observed effect per segment, one row per segment (sorted).

    Columns: ``segment``, ``n``, ``n_treated``, ``n_control``, ``mean_effect`` (mean of
    the estimated per-row ``effect``), ``observed_effect`` (treated minus control mean
    outcome in the segment; inverse-propensity weighted if ``propensity`` is given),
    ``observed_std_err``, ``observed_ci_low``, ``observed_ci_high`` (normal, level
    ``1 - alpha``; null when an arm has fewer than two rows).
    """
    y = as_finite_vector(Y, "Y")
    tau = as_finite_vector(effect, "effect")
    t, _ = encode_treatment(T)
    seg = pl.Series("segment", segments) if not isinstance(segments, pl.Series) else segments
    lengths = {"segments": seg.len(), "T": t.shape[0], "Y": y.shape[0], "effect": tau.shape[0]}
    if propensity is None:
        e = np.full(y.shape[0], 0.5)
    else:
        e = as_finite_vector(propensity, "propensity")
        lengths["propensity"] = e.shape[0]
    if len(set(lengths.values())) != 1:
        detail = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"row counts differ: {detail}")
    if e.min() <= 0.0 or e.max() >= 1.0:
        raise ValueError("propensity must lie strictly inside (0, 1)")
    if not 0.0 < float(alpha) < 1.0:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    z = NormalDist().inv_cdf(1.0 - float(alpha) / 2.0)

    codes = (
        seg.rename("segment")
        .to_frame()
        .with_columns(pl.col("segment").rank("dense").cast(pl.Int64).alias("code"))
    )
    code = codes["code"].fill_null(0).to_numpy()
    labels = codes.unique("code", keep="first").sort("code")
    rows: list[dict[str, Any]] = []
    for c, label in zip(labels["code"].fill_null(0).to_list(), labels["segment"], strict=True):
        m = code == c
        tt, yy, ee = t[m], y[m], e[m]
        treated, control = tt == 1, tt == 0
        n_t, n_c = int(treated.sum()), int(control.sum())
        mean_t, var_t = _weighted_mean_and_var(yy[treated], 1.0 / ee[treated])
        mean_c, var_c = _weighted_mean_and_var(yy[control], 1.0 / (1.0 - ee[control]))
        observed = mean_t - mean_c if n_t and n_c else None
        se = float(np.sqrt(var_t + var_c)) if n_t > 1 and n_c > 1 else None
        rows.append(
            {
                "segment": label,
                "n": int(m.sum()),
                "n_treated": n_t,
                "n_control": n_c,
                "mean_effect": float(tau[m].mean()),
                "observed_effect": observed,
                "observed_std_err": se,
                "observed_ci_low": None if se is None or observed is None else observed - z * se,
                "observed_ci_high": None if se is None or observed is None else observed + z * se,
            }
        )
    schema = {
        "segment": seg.dtype,
        "n": pl.Int64,
        "n_treated": pl.Int64,
        "n_control": pl.Int64,
        "mean_effect": pl.Float64,
        "observed_effect": pl.Float64,
        "observed_std_err": pl.Float64,
        "observed_ci_low": pl.Float64,
        "observed_ci_high": pl.Float64,
    }
    return pl.DataFrame(rows, schema=schema)
