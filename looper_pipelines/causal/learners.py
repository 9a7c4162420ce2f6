"""Candidate CATE learners: EconML meta-learners and a causal forest on LightGBM models.

Each learner is a scikit-learn style estimator: parameters in ``__init__``,
``fit(X, T, Y, propensity=None)`` returning ``self``, fitted state in attributes with a
trailing underscore, and ``effect(X)`` returning the estimated effect of ``T=1`` over
``T=0`` per row. ``T`` is already coded 0/1 here; input checks live in
:mod:`looper_pipelines.causal.cate`.

Known assignment probabilities (``propensity``) are used where the learner can take
them: the DR learner and the causal forest receive them as an extra nuisance column
that a fixed propensity model reads back (:class:`KnownPropensityClassifier`); the
S- and T-learners do not use a propensity at all, and the X-learner estimates its own
(it only weights two effect models with it, so an estimate is harmless).
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
from lightgbm import LGBMClassifier, LGBMRegressor
from numpy.typing import NDArray
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

FloatArray = NDArray[np.float64]

LEARNERS: tuple[str, ...] = ("s_learner", "t_learner", "x_learner", "dr_learner", "causal_forest")

# Small LightGBM models: the data sets are experiment logs of thousands to a few
# hundred thousand rows, and every candidate is fitted twice under ``learner="auto"``.
OUTCOME_PARAMS: dict[str, Any] = {
    "n_estimators": 100,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 20,
    "subsample": 0.8,
    "subsample_freq": 1,
    "colsample_bytree": 0.9,
}
# Effect models (X-learner stage two, DR-learner final stage) fit noisy imputed effects:
# fewer, larger leaves and slower learning.
EFFECT_PARAMS: dict[str, Any] = {
    "n_estimators": 100,
    "learning_rate": 0.03,
    "num_leaves": 7,
    "min_child_samples": 50,
    "subsample": 0.8,
    "subsample_freq": 1,
    "reg_lambda": 5.0,
}
# Propensity models: in experiment data the truth is often constant, so keep them smooth.
PROPENSITY_PARAMS: dict[str, Any] = {
    "n_estimators": 100,
    "learning_rate": 0.03,
    "num_leaves": 7,
    "min_child_samples": 100,
    "reg_lambda": 10.0,
}
PROPENSITY_CLIP = 0.01


def lgbm_regressor(random_state: int, n_jobs: int = 1, **params: Any) -> LGBMRegressor:
    """A small LightGBM regressor (``OUTCOME_PARAMS`` unless overridden)."""
    merged = {**OUTCOME_PARAMS, **params}
    return LGBMRegressor(random_state=random_state, n_jobs=n_jobs, verbose=-1, **merged)


def lgbm_classifier(random_state: int, n_jobs: int = 1, **params: Any) -> LGBMClassifier:
    """A small, smooth LightGBM classifier for propensities (``PROPENSITY_PARAMS``)."""
    merged = {**PROPENSITY_PARAMS, **params}
    return LGBMClassifier(random_state=random_state, n_jobs=n_jobs, verbose=-1, **merged)


class KnownPropensityClassifier(ClassifierMixin, BaseEstimator):
    """A fixed propensity model: ``P(T=1 | row)`` is the input's last column.

    Lets EconML learners use logged assignment probabilities: the probabilities are
    passed as the nuisance-only controls ``W`` (EconML appends ``W`` after ``X``), and
    this model returns them instead of estimating anything. ``fit`` learns nothing.
    """

    def fit(
        self, X: FloatArray, y: NDArray[Any], sample_weight: FloatArray | None = None
    ) -> KnownPropensityClassifier:
        self.classes_ = np.unique(np.asarray(y))
        return self

    def predict_proba(self, X: FloatArray) -> FloatArray:
        p = np.asarray(X, dtype=np.float64)[:, -1]
        return np.column_stack([1.0 - p, p])

    def predict(self, X: FloatArray) -> NDArray[np.int64]:
        return (self.predict_proba(X)[:, 1] > 0.5).astype(np.int64)


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence the advisory warnings EconML and scikit-learn raise on every fit."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        warnings.filterwarnings("ignore", message=".*Co-variance matrix is underdetermined.*")
        yield


class BaseCateLearner(BaseEstimator):
    """Shared ``fit``/``effect`` plumbing around one EconML estimator (``model_``)."""

    name: ClassVar[str] = ""
    uses_propensity: ClassVar[bool] = False

    def __init__(self, random_state: int = 0, n_jobs: int = 1) -> None:
        self.random_state = random_state
        self.n_jobs = n_jobs

    def _make_model(self, known_propensity: bool) -> Any:
        raise NotImplementedError

    def fit(
        self,
        X: FloatArray,
        T: NDArray[np.int64],
        Y: FloatArray,
        propensity: FloatArray | None = None,
    ) -> BaseCateLearner:
        known = propensity is not None and self.uses_propensity
        model = self._make_model(known)
        with _quiet():
            if known:
                assert propensity is not None
                model.fit(Y, T, X=X, W=np.asarray(propensity, dtype=np.float64)[:, None])
            else:
                model.fit(Y, T, X=X)
        self.model_ = model
        self.n_features_in_ = X.shape[1]
        return self

    def effect(self, X: FloatArray) -> FloatArray:
        check_is_fitted(self, "model_")
        with _quiet():
            tau = self.model_.effect(X)
        return np.asarray(tau, dtype=np.float64).reshape(-1)


class SLearnerCate(BaseCateLearner):
    """One outcome model on ``[X, T]``; effect = f(x, 1) - f(x, 0)."""

    name = "s_learner"

    def _make_model(self, known_propensity: bool) -> Any:
        from econml.metalearners import SLearner

        return SLearner(overall_model=lgbm_regressor(self.random_state, self.n_jobs))


class TLearnerCate(BaseCateLearner):
    """One outcome model per arm; effect = f1(x) - f0(x)."""

    name = "t_learner"

    def _make_model(self, known_propensity: bool) -> Any:
        from econml.metalearners import TLearner

        return TLearner(models=lgbm_regressor(self.random_state, self.n_jobs))


class XLearnerCate(BaseCateLearner):
    """T-learner outcome models, then effect models on imputed effects, blended by propensity."""

    name = "x_learner"

    def _make_model(self, known_propensity: bool) -> Any:
        from econml.metalearners import XLearner

        return XLearner(
            models=lgbm_regressor(self.random_state, self.n_jobs),
            cate_models=lgbm_regressor(self.random_state, self.n_jobs, **EFFECT_PARAMS),
            propensity_model=lgbm_classifier(self.random_state, self.n_jobs),
        )


class DRLearnerCate(BaseCateLearner):
    """Cross-fitted doubly robust pseudo-outcomes regressed on ``X`` (EconML ``DRLearner``)."""

    name = "dr_learner"
    uses_propensity = True

    def __init__(self, random_state: int = 0, n_jobs: int = 1, cv: int = 3) -> None:
        super().__init__(random_state=random_state, n_jobs=n_jobs)
        self.cv = cv

    def _make_model(self, known_propensity: bool) -> Any:
        from econml.dr import DRLearner

        propensity_model: Any = (
            KnownPropensityClassifier()
            if known_propensity
            else lgbm_classifier(self.random_state, self.n_jobs)
        )
        return DRLearner(
            model_propensity=propensity_model,
            model_regression=lgbm_regressor(self.random_state, self.n_jobs),
            model_final=lgbm_regressor(self.random_state, self.n_jobs, **EFFECT_PARAMS),
            min_propensity=PROPENSITY_CLIP,
            cv=self.cv,
            random_state=self.random_state,
        )


class CausalForestCate(BaseCateLearner):
    """Generalised random forest on DML residuals (EconML ``CausalForestDML``)."""

    name = "causal_forest"
    uses_propensity = True

    def __init__(
        self, random_state: int = 0, n_jobs: int = 1, cv: int = 3, n_estimators: int = 200
    ) -> None:
        super().__init__(random_state=random_state, n_jobs=n_jobs)
        self.cv = cv
        self.n_estimators = n_estimators

    def _make_model(self, known_propensity: bool) -> Any:
        from econml.dml import CausalForestDML

        model_t: Any = (
            KnownPropensityClassifier()
            if known_propensity
            else lgbm_classifier(self.random_state, self.n_jobs)
        )
        return CausalForestDML(
            model_y=lgbm_regressor(self.random_state, self.n_jobs),
            model_t=model_t,
            discrete_treatment=True,
            n_estimators=self.n_estimators,
            min_samples_leaf=10,
            cv=self.cv,
            inference=False,
            n_jobs=self.n_jobs,
            random_state=self.random_state,
        )


LEARNER_CLASSES: dict[str, type[BaseCateLearner]] = {
    cls.name: cls
    for cls in (SLearnerCate, TLearnerCate, XLearnerCate, DRLearnerCate, CausalForestCate)
}


def make_learner(name: str, random_state: int = 0, n_jobs: int = 1) -> BaseCateLearner:
    """An unfitted learner by name (one of :data:`LEARNERS`)."""
    if name not in LEARNER_CLASSES:
        raise ValueError(f"learner must be one of {', '.join(LEARNERS)}; got {name!r}")
    return LEARNER_CLASSES[name](random_state=random_state, n_jobs=n_jobs)
