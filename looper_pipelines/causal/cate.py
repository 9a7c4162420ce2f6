"""Conditional average treatment effects (CATE) from experiment data.

``fit_cate`` fits one named learner, or (``learner="auto"``) picks among the candidate
learners by a doubly robust score on held-out rows and refits the winner on all rows.
The fitted :class:`CateEstimator` gives per-row effects (``effect``) and the average
effect with a confidence interval (``ate``, cross-fitted AIPW on the training rows).
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from sklearn.base import BaseEstimator
from sklearn.utils.validation import check_is_fitted

from looper_pipelines.causal.learners import LEARNERS, BaseCateLearner, make_learner
from looper_pipelines.causal.selection import cross_fitted_pseudo_outcome, select_learner

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]

AUTO = "auto"
MIN_ROWS_PER_ARM = 50
ATE_FOLDS = 5


# --------------------------------------------------------------------------- input checks


def as_feature_matrix(X: Any, name: str = "X") -> FloatArray:
    """``X`` as a finite 2-D float array (NumPy, pandas or Polars input; 1-D is one column)."""
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):
        X = X.to_numpy()
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be two-dimensional (rows x features), got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return arr


def _as_vector(x: Any, name: str) -> NDArray[Any]:
    if hasattr(x, "to_numpy") and not isinstance(x, np.ndarray):
        x = x.to_numpy()
    arr = np.asarray(x)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    return arr


def as_finite_vector(x: Any, name: str) -> FloatArray:
    arr = _as_vector(x, name)
    try:
        out = arr.astype(np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric: {exc}") from exc
    if not np.isfinite(out).all():
        bad = int(np.count_nonzero(~np.isfinite(out)))
        raise ValueError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return out


def encode_treatment(T: Any) -> tuple[IntArray, tuple[Any, Any]]:
    """Code a binary treatment as 0/1.

    Accepts 0/1 numbers, booleans, or any two distinct values; the values are sorted and
    the first is the control (``False < True``, ``0 < 1``, ``"control" < "treatment"``).
    Returns the coded array and ``(control_value, treated_value)``.
    """
    arr = _as_vector(T, "T")
    if arr.dtype.kind in "fc" and not np.isfinite(arr).all():
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise ValueError(f"T contains {bad} non-finite value(s) (NaN or inf)")
    if arr.dtype.kind == "O" and any(v is None for v in arr):
        raise ValueError("T contains missing values (None)")
    try:
        values, coded = np.unique(arr, return_inverse=True)
    except TypeError as exc:
        raise ValueError(f"T values cannot be ordered: {exc}") from exc
    if values.shape[0] != 2:
        shown = ", ".join(repr(v) for v in values[:5].tolist())
        raise ValueError(
            f"T must take exactly two distinct values (control and treatment); "
            f"got {values.shape[0]}: {shown}"
        )
    control, treated = values.tolist()
    return coded.astype(np.int64).reshape(-1), (control, treated)


def check_inputs(
    X: Any, T: Any, Y: Any, propensity: Any = None
) -> tuple[FloatArray, IntArray, FloatArray, FloatArray | None, tuple[Any, Any]]:
    """Validate and convert ``(X, T, Y, propensity)``; raise ``ValueError`` naming the argument."""
    X_arr = as_feature_matrix(X, "X")
    T_raw = _as_vector(T, "T")
    Y_arr = as_finite_vector(Y, "Y")
    lengths = {"X": X_arr.shape[0], "T": T_raw.shape[0], "Y": Y_arr.shape[0]}
    p_arr: FloatArray | None = None
    if propensity is not None:
        p_arr = as_finite_vector(propensity, "propensity")
        lengths["propensity"] = p_arr.shape[0]
    if len(set(lengths.values())) != 1:
        detail = ", ".join(f"{k}={v}" for k, v in lengths.items())
        raise ValueError(f"row counts differ: {detail}")
    T_arr, values = encode_treatment(T_raw)
    if p_arr is not None and (p_arr.min() <= 0.0 or p_arr.max() >= 1.0):
        raise ValueError(
            "propensity must lie strictly inside (0, 1); got values in "
            f"[{p_arr.min():.6g}, {p_arr.max():.6g}]"
        )
    n_treated = int(T_arr.sum())
    n_control = int(T_arr.shape[0] - n_treated)
    if min(n_treated, n_control) < MIN_ROWS_PER_ARM:
        raise ValueError(
            f"T has too few rows per arm: {n_control} control ({values[0]!r}) and "
            f"{n_treated} treated ({values[1]!r}); at least {MIN_ROWS_PER_ARM} each are needed"
        )
    return X_arr, T_arr, Y_arr, p_arr, values


def _check_learner(learner: str) -> str:
    valid = (AUTO, *LEARNERS)
    if learner not in valid:
        raise ValueError(f"learner must be one of {', '.join(valid)}; got {learner!r}")
    return learner


# --------------------------------------------------------------------------- estimator


class CateEstimator(BaseEstimator):
    """Heterogeneous treatment effects of a binary treatment, scikit-learn style.

    Parameters
    ----------
    learner:
        ``"auto"`` or one of ``s_learner``, ``t_learner``, ``x_learner``,
        ``dr_learner``, ``causal_forest``.
    random_state:
        Seed of the selection splits, the cross-fitting folds and every model.
    selection_folds:
        How ``"auto"`` holds rows out. ``K >= 2`` (default 3): K folds stratified by
        treatment; each candidate is fitted K times on the other folds and scored on the
        held-out fold, so every row is scored once, by models that never saw it.
        ``1``: a single held-out part of ``holdout_fraction`` of the rows.
    holdout_fraction:
        Share of rows held out when ``selection_folds=1``.
    candidates:
        Learners considered by ``"auto"`` (default: all).
    n_jobs:
        Threads per LightGBM model and causal forest.

    Under ``"auto"`` each candidate's held-out score is the mean squared difference
    between its effect estimate and the doubly robust pseudo-outcome of the held-out
    rows (nuisance models fitted on the training part only); the lowest wins and is
    refitted on all rows. The score ranks candidates like their mean squared error
    against the true effect, plus a constant shared by all.

    After ``fit``: ``learner_name``, ``selection_scores`` (``"auto"`` only, lower is
    better), ``selection_std_errs_`` (standard error of each score's difference to the
    winner's), ``learner_`` (the fitted learner), ``treatment_values_``
    (``(control, treated)`` as given), ``ate_`` and ``ate_std_err_`` (cross-fitted AIPW
    on the training rows), ``n_features_in_``.
    """

    def __init__(
        self,
        learner: str = AUTO,
        random_state: int = 0,
        selection_folds: int = 3,
        holdout_fraction: float = 0.3,
        candidates: Sequence[str] | None = None,
        n_jobs: int = 1,
    ) -> None:
        self.learner = learner
        self.random_state = random_state
        self.selection_folds = selection_folds
        self.holdout_fraction = holdout_fraction
        self.candidates = candidates
        self.n_jobs = n_jobs

    def fit(self, X: Any, T: Any, Y: Any, propensity: Any = None) -> CateEstimator:
        """Fit on experiment rows; ``propensity`` is the known ``P(T=treated | x)`` per row."""
        _check_learner(self.learner)
        if not 0.0 < float(self.holdout_fraction) < 1.0:
            raise ValueError(f"holdout_fraction must lie in (0, 1); got {self.holdout_fraction!r}")
        if int(self.selection_folds) < 1:
            raise ValueError(f"selection_folds must be at least 1; got {self.selection_folds!r}")
        candidates = tuple(LEARNERS if self.candidates is None else self.candidates)
        for name in candidates:
            if name not in LEARNERS:
                raise ValueError(f"candidates must be among {', '.join(LEARNERS)}; got {name!r}")
        X_arr, T_arr, Y_arr, p_arr, values = check_inputs(X, T, Y, propensity)
        seed = int(self.random_state)

        scores: dict[str, float] = {}
        score_errs: dict[str, float] = {}
        if self.learner == AUTO:
            if not candidates:
                raise ValueError("candidates is empty")
            result = select_learner(
                {name: partial(make_learner, name, seed, self.n_jobs) for name in candidates},
                X_arr,
                T_arr,
                Y_arr,
                p_arr,
                n_splits=int(self.selection_folds),
                holdout_fraction=float(self.holdout_fraction),
                random_state=seed,
                n_jobs=self.n_jobs,
            )
            scores, chosen = result.scores, result.best
            score_errs = result.std_errs
        else:
            chosen = self.learner
        fitted: BaseCateLearner = make_learner(chosen, seed, self.n_jobs)
        fitted.fit(X_arr, T_arr, Y_arr, p_arr)

        psi = cross_fitted_pseudo_outcome(
            X_arr, T_arr, Y_arr, p_arr, n_folds=ATE_FOLDS, random_state=seed, n_jobs=self.n_jobs
        )
        self.learner_ = fitted
        self.learner_name_ = chosen
        self.selection_scores_ = scores
        self.selection_std_errs_ = score_errs
        self.treatment_values_ = values
        self.n_features_in_ = X_arr.shape[1]
        self.n_rows_ = X_arr.shape[0]
        self.ate_ = float(psi.mean())
        self.ate_std_err_ = float(psi.std(ddof=1) / np.sqrt(psi.shape[0]))
        return self

    @property
    def learner_name(self) -> str:
        """The fitted learner: chosen by ``"auto"`` or named directly."""
        check_is_fitted(self, "learner_")
        return str(self.learner_name_)

    @property
    def selection_scores(self) -> dict[str, float]:
        """Held-out doubly robust score per candidate (lower is better); empty unless auto."""
        check_is_fitted(self, "learner_")
        return dict(self.selection_scores_)

    def effect(self, X: Any) -> FloatArray:
        """Estimated effect of treated over control for each row of ``X``, shape ``(n,)``."""
        check_is_fitted(self, "learner_")
        X_arr = as_feature_matrix(X, "X")
        if X_arr.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X_arr.shape[1]} features; the model was fitted on {self.n_features_in_}"
            )
        return self.learner_.effect(X_arr)

    def ate(self, X: Any = None, alpha: float = 0.05) -> tuple[float, float, float]:
        """Average treatment effect and its ``1 - alpha`` confidence interval.

        Without ``X``: the cross-fitted AIPW (doubly robust) estimate on the training rows,
        with a normal interval from the per-row pseudo-outcomes; valid whenever either
        the outcome models or the propensities are right (known propensities from the
        experiment log make it so).

        With ``X``: the mean of the CATE model over those rows. Its interval adds the
        training AIPW standard error (estimation) to the sampling error of the mean
        over ``X``; this is an approximation that does not account for the CATE
        model's own error when ``X`` differs from the training population.
        """
        check_is_fitted(self, "learner_")
        a = float(alpha)
        if not 0.0 < a < 1.0:
            raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
        z = NormalDist().inv_cdf(1.0 - a / 2.0)
        if X is None:
            value, se = self.ate_, self.ate_std_err_
        else:
            tau = self.effect(X)
            value = float(tau.mean())
            sampling = float(tau.std(ddof=1) / np.sqrt(tau.shape[0])) if tau.shape[0] > 1 else 0.0
            se = float(np.hypot(self.ate_std_err_, sampling))
        return value, value - z * se, value + z * se


def fit_cate(
    X: ArrayLike | Any,
    T: ArrayLike | Any,
    Y: ArrayLike | Any,
    learner: str = AUTO,
    propensity: ArrayLike | None = None,
    random_state: int = 0,
    *,
    selection_folds: int = 3,
    holdout_fraction: float = 0.3,
    candidates: Sequence[str] | None = None,
    n_jobs: int = 1,
) -> CateEstimator:
    """Fit a CATE model of a binary treatment on experiment data.

    ``X`` (n, d) features; ``T`` (n,) binary treatment (0/1, bool or two distinct
    values, the sorted first being control); ``Y`` (n,) outcome; ``propensity``
    optional known ``P(T=treated | x)`` per row from the experiment log. ``learner`` is
    ``"auto"`` or one of ``s_learner``, ``t_learner``, ``x_learner``, ``dr_learner``,
    ``causal_forest``; ``"auto"`` picks the candidate with the lowest held-out doubly
    robust score and refits it on all rows. See :class:`CateEstimator`.
    """
    est = CateEstimator(
        learner=learner,
        random_state=random_state,
        selection_folds=selection_folds,
        holdout_fraction=holdout_fraction,
        candidates=candidates,
        n_jobs=n_jobs,
    )
    return est.fit(X, T, Y, propensity)
