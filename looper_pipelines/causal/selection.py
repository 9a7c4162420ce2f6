"""Doubly robust pseudo-outcomes, cross-fitting, and held-out scoring of CATE learners.

For a row with features ``x``, treatment ``t`` in {0, 1} and outcome ``y``, the doubly
robust (AIPW) pseudo-outcome is::

    psi = mu1(x) - mu0(x) + t * (y - mu1(x)) / e(x) - (1 - t) * (y - mu0(x)) / (1 - e(x))

where ``mu0``, ``mu1`` are outcome models per arm and ``e`` is ``P(T=1 | x)``. If the
nuisance models were fitted on other rows, ``E[psi | x]`` equals the true effect
``tau(x)`` when either the outcome models or the propensity are right, so

- the mean of cross-fitted pseudo-outcomes is the AIPW estimate of the average effect,
  with standard error ``sd(psi) / sqrt(n)``;
- ``mean((tau_hat(x) - psi)**2)`` on held-out rows ranks CATE models like their
  (unobservable) mean squared error ``mean((tau_hat(x) - tau(x))**2)``, up to a constant
  shared by all candidates.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from sklearn.model_selection import StratifiedKFold, train_test_split

from looper_pipelines.causal.learners import (
    PROPENSITY_CLIP,
    BaseCateLearner,
    lgbm_classifier,
    lgbm_regressor,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]


@dataclass(frozen=True)
class Nuisance:
    """Nuisance predictions for a set of rows: outcome per arm and propensity."""

    mu0: FloatArray
    mu1: FloatArray
    e: FloatArray


def fit_predict_nuisance(
    X_fit: FloatArray,
    T_fit: IntArray,
    Y_fit: FloatArray,
    X_pred: FloatArray,
    propensity_pred: FloatArray | None = None,
    random_state: int = 0,
    n_jobs: int = 1,
) -> Nuisance:
    """Fit outcome models per arm (and a propensity model unless it is known) on the fit
    rows and predict them for the prediction rows.

    ``propensity_pred``: known ``P(T=1 | x)`` of the prediction rows; when ``None`` a
    LightGBM classifier is fitted and its predictions are clipped to
    ``[PROPENSITY_CLIP, 1 - PROPENSITY_CLIP]``.
    """
    mu = []
    for arm in (0, 1):
        rows = T_fit == arm
        model = lgbm_regressor(random_state, n_jobs).fit(X_fit[rows], Y_fit[rows])
        mu.append(np.asarray(model.predict(X_pred), dtype=np.float64))
    if propensity_pred is None:
        clf = lgbm_classifier(random_state, n_jobs).fit(X_fit, T_fit)
        e = np.asarray(clf.predict_proba(X_pred)[:, 1], dtype=np.float64)
        e = np.clip(e, PROPENSITY_CLIP, 1.0 - PROPENSITY_CLIP)
    else:
        e = np.asarray(propensity_pred, dtype=np.float64)
    return Nuisance(mu0=mu[0], mu1=mu[1], e=e)


def dr_pseudo_outcome(Y: FloatArray, T: IntArray, nuisance: Nuisance) -> FloatArray:
    """The doubly robust pseudo-outcome of each row (see the module docstring)."""
    mu0, mu1, e = nuisance.mu0, nuisance.mu1, nuisance.e
    t = T.astype(np.float64)
    return mu1 - mu0 + t * (Y - mu1) / e - (1.0 - t) * (Y - mu0) / (1.0 - e)


def cross_fitted_pseudo_outcome(
    X: FloatArray,
    T: IntArray,
    Y: FloatArray,
    propensity: FloatArray | None = None,
    n_folds: int = 5,
    random_state: int = 0,
    n_jobs: int = 1,
) -> FloatArray:
    """Pseudo-outcomes where each row's nuisance models never saw that row.

    Folds are stratified by treatment and seeded by ``random_state``.
    """
    psi = np.empty(Y.shape[0], dtype=np.float64)
    folds = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=random_state)
    for fit_rows, pred_rows in folds.split(X, T):
        nuisance = fit_predict_nuisance(
            X[fit_rows],
            T[fit_rows],
            Y[fit_rows],
            X[pred_rows],
            None if propensity is None else propensity[pred_rows],
            random_state=random_state,
            n_jobs=n_jobs,
        )
        psi[pred_rows] = dr_pseudo_outcome(Y[pred_rows], T[pred_rows], nuisance)
    return psi


def holdout_split(
    T: IntArray, holdout_fraction: float, random_state: int
) -> tuple[IntArray, IntArray]:
    """Row indices ``(train, holdout)``, stratified by treatment and seeded."""
    rows = np.arange(T.shape[0])
    train, holdout = train_test_split(
        rows, test_size=holdout_fraction, stratify=T, random_state=random_state
    )
    return np.sort(train), np.sort(holdout)


@dataclass(frozen=True)
class SelectionResult:
    """Held-out scores (lower is better), their standard errors, and the winner.

    ``std_errs[name]`` is the standard error of the difference between ``name``'s score
    and the winner's (paired over held-out rows; zero for the winner itself): it shows
    whether the choice was clear or within noise.
    """

    scores: dict[str, float]
    std_errs: dict[str, float]
    best: str
    n_splits: int


def selection_splits(
    T: IntArray, n_splits: int, holdout_fraction: float, random_state: int
) -> list[tuple[IntArray, IntArray]]:
    """``(train, holdout)`` index pairs: one seeded split for ``n_splits=1``, else K folds.

    Both are stratified by treatment. With K folds every row is held out exactly once.
    """
    if n_splits == 1:
        return [holdout_split(T, holdout_fraction, random_state)]
    folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
    return [(train, holdout) for train, holdout in folds.split(np.zeros((T.shape[0], 1)), T)]


def select_learner(
    candidates: Mapping[str, Callable[[], BaseCateLearner]],
    X: FloatArray,
    T: IntArray,
    Y: FloatArray,
    propensity: FloatArray | None = None,
    n_splits: int = 3,
    holdout_fraction: float = 0.3,
    random_state: int = 0,
    n_jobs: int = 1,
) -> SelectionResult:
    """Score every candidate on rows it was not fitted on; lowest score wins.

    ``candidates`` maps a name to a factory of unfitted learners. For each split
    (:func:`selection_splits`), the nuisance models and every candidate are fitted on
    the training part; on the held-out part the candidate's effect estimate is compared
    with the doubly robust pseudo-outcome built from those nuisance models (known
    propensities are used as given). The score is the mean squared difference over all
    held-out rows. Ties go to the earlier candidate.
    """
    if not candidates:
        raise ValueError("candidates is empty")
    n = T.shape[0]
    sq = {name: np.full(n, np.nan) for name in candidates}
    held = np.zeros(n, dtype=bool)
    for train, holdout in selection_splits(T, n_splits, holdout_fraction, random_state):
        nuisance = fit_predict_nuisance(
            X[train],
            T[train],
            Y[train],
            X[holdout],
            None if propensity is None else propensity[holdout],
            random_state,
            n_jobs,
        )
        psi = dr_pseudo_outcome(Y[holdout], T[holdout], nuisance)
        prop_train = None if propensity is None else propensity[train]
        for name, factory in candidates.items():
            learner = factory().fit(X[train], T[train], Y[train], prop_train)
            sq[name][holdout] = (learner.effect(X[holdout]) - psi) ** 2
        held[holdout] = True
    scores = {name: float(v[held].mean()) for name, v in sq.items()}
    best = min(scores, key=lambda k: scores[k])
    m = int(held.sum())
    std_errs = {
        name: float(np.std(v[held] - sq[best][held], ddof=1) / np.sqrt(m)) if m > 1 else 0.0
        for name, v in sq.items()
    }
    return SelectionResult(scores=scores, std_errs=std_errs, best=best, n_splits=n_splits)
