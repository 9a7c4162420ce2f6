"""LightGBM per label: early stopping on the newest examples, then a refit on all of them."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.features import action_grid, categorical_inputs, input_names
from looper_pipelines.training.crossfit import CrossFitted, assign_folds
from looper_pipelines.training.dataset import TrainingSet, decided_at_us


@dataclass
class LabelModel:
    label: str
    task: str  # binary | regression
    booster: lgb.Booster  # refitted on every example: what is deployed
    best_iteration: int
    metrics: dict[str, float] = field(default_factory=dict)  # of the holdout model on the holdout
    holdout_booster: lgb.Booster | None = None  # trained without the holdout


@dataclass
class TrainedModels:
    models: dict[str, LabelModel]
    feature_names: list[str]
    categorical: list[str]
    train_days: tuple[int, int]
    valid_days: tuple[int, int]
    n_train: int
    n_valid: int
    valid_mask: np.ndarray
    crossfit: CrossFitted | None = None

    @property
    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {"n_train": float(self.n_train), "n_valid": float(self.n_valid),
                                 "n_examples": float(self.n_train + self.n_valid)}
        for m in self.models.values():
            out.update({f"{m.label}.{k}": v for k, v in m.metrics.items()})
        return out

    @property
    def rounds(self) -> dict[str, int]:
        """Boosting rounds per label (chosen by early stopping on the holdout)."""
        return {label: m.best_iteration for label, m in self.models.items()}


def time_order(data: TrainingSet) -> np.ndarray:
    """Row positions from the oldest decision to the newest."""
    return np.lexsort((np.arange(len(data)), decided_at_us(data)))


def holdout_mask(bp: Blueprint, data: TrainingSet) -> np.ndarray:
    """Boolean mask of the holdout: the newest examples, sized by the blueprint's
    ``model.validation`` (a share of the examples, at least ``min_examples``, at most half
    of them, within the newest ``max_days`` days when set)."""
    n = len(data)
    if n < 2:
        raise ValueError(f"need at least 2 examples to hold some out, got {n}")
    v = bp.model.validation
    k = min(max(math.ceil(v.fraction * n), v.min_examples), n // 2)
    if v.max_days is not None:
        days = np.unique(data.day)
        recent = int((data.day >= days[-min(v.max_days, len(days))]).sum())
        k = min(k, recent if recent < n else n // 2)
    k = max(k, 1)
    mask = np.zeros(n, dtype=bool)
    mask[time_order(data)[n - k:]] = True
    return mask


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import log_loss, roc_auc_score

    p = np.clip(p, 1e-7, 1 - 1e-7)
    out = {"log_loss": float(log_loss(y, p, labels=[0, 1])), "mean_pred": float(p.mean()), "mean_label": float(y.mean())}
    out["auc"] = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    out["calibration_ratio"] = float(p.mean() / y.mean()) if y.mean() > 0 else float("nan")
    return out


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"rmse": float(np.sqrt(np.mean((y - p) ** 2))), "mean_pred": float(p.mean()), "mean_label": float(y.mean())}


def label_task(bp: Blueprint, label: str) -> str:
    return "binary" if bp.label(label).kind == "binary" else "regression"


def model_inputs(bp: Blueprint) -> tuple[list[str], list[str]]:
    """Input names of every label model (the features, then the action) and the
    categorical ones among them."""
    return input_names(bp), categorical_inputs(bp)


def lgb_params(bp: Blueprint, label: str, seed: int = 0) -> dict[str, Any]:
    """LightGBM parameters of one label's model: the blueprint's over Looper's defaults."""
    return {
        "objective": label_task(bp, label),
        "verbosity": -1,
        "seed": seed,
        "num_threads": 2,
        "deterministic": True,
        "force_row_wise": True,
        **bp.model.params,
    }


def fit_label_model(
    bp: Blueprint,
    label: str,
    x: np.ndarray,
    y: np.ndarray,
    *,
    rounds: int,
    valid: tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
    weight: np.ndarray | None = None,
    valid_weight: np.ndarray | None = None,
) -> tuple[lgb.Booster, int]:
    """One label's LightGBM model as the blueprint declares it (``x`` with the action as
    the last column). With ``valid``, training stops early on it; returns the booster cut
    at its best iteration and that iteration."""
    names, categorical = model_inputs(bp)
    params = lgb_params(bp, label, seed)
    train_set = lgb.Dataset(x, y, weight=weight, feature_name=names, categorical_feature=categorical, free_raw_data=False)
    kwargs: dict[str, Any] = {}
    if valid is not None:
        kwargs["valid_sets"] = [lgb.Dataset(valid[0], valid[1], weight=valid_weight, reference=train_set)]
        kwargs["callbacks"] = [lgb.early_stopping(bp.model.early_stopping_rounds, verbose=False)]
    booster = lgb.train(params, train_set, num_boost_round=rounds, **kwargs)
    best = (booster.best_iteration or booster.current_iteration()) if valid is not None else booster.current_iteration()
    best = max(int(best), 1)
    return lgb.Booster(model_str=booster.model_to_string(num_iteration=best)), best


MAX_WEIGHT = 100.0


def sample_weights(bp: Blueprint, data: TrainingSet) -> np.ndarray | None:
    """Training weights as the blueprint's ``model.sample_weight`` says (None: unweighted)."""
    if bp.model.sample_weight == "none":
        return None
    w = np.minimum(1.0 / np.asarray(data.propensity, dtype=np.float64), MAX_WEIGHT)
    return w / w.mean()


def train_models(
    bp: Blueprint, data: TrainingSet, seed: int = 0, shuffle_labels: bool = False, refit: bool = True
) -> TrainedModels:
    """One model per label in ``bp.model_labels``.

    Cross-validation over folds of subjects (``model.crossfit_folds``) chooses the number of
    boosting rounds (early stopping on the mean held-out loss, every example held out once)
    and its fold models give the out-of-fold predictions (``crossfit``). A model trained
    without the holdout (the newest examples) with that many rounds gives the holdout
    metrics; the deployed model is refitted on every example (``refit=False`` deploys the
    holdout model). ``shuffle_labels`` (for tests and sanity baselines) trains on permuted
    labels; the metrics still compare with the true ones."""
    if len(data) < 20:
        raise ValueError(f"too few training examples ({len(data)})")
    valid = holdout_mask(bp, data)
    x = data.x_with_action
    feature_names, categorical = model_inputs(bp)
    w = sample_weights(bp, data)
    n_folds = bp.model.crossfit_folds
    folds = assign_folds(subjects_of(data), n_folds, seed)
    n_actions = len(bp.decision.actions)
    oof = {label: np.empty((len(data), n_actions)) for label in bp.model_labels}
    rng = np.random.default_rng(seed)
    models: dict[str, LabelModel] = {}
    for label in bp.model_labels:
        y = data.labels[label]
        y_fit = rng.permutation(y) if shuffle_labels else y
        best = cross_validate(bp, label, x, y_fit, folds, seed=seed, weight=w, out=oof[label])
        held, _ = fit_label_model(bp, label, x[~valid], y_fit[~valid], rounds=best, seed=seed,
                                  weight=None if w is None else w[~valid])
        pred = held.predict(x[valid])
        task = label_task(bp, label)
        metrics = binary_metrics(y[valid], pred) if task == "binary" else regression_metrics(y[valid], pred)
        final = fit_label_model(bp, label, x, y_fit, rounds=best, seed=seed, weight=w)[0] if refit else held
        models[label] = LabelModel(label, task, final, best, metrics, held)
    days = data.day
    ids = data.frame["decision_id"].cast(str).to_numpy() if "decision_id" in data.frame.columns else np.array(
        [str(i) for i in range(len(data))])
    return TrainedModels(
        models=models,
        feature_names=feature_names,
        categorical=categorical,
        train_days=(int(days[~valid].min()), int(days[~valid].max())),
        valid_days=(int(days[valid].min()), int(days[valid].max())),
        n_train=int((~valid).sum()),
        n_valid=int(valid.sum()),
        valid_mask=valid,
        crossfit=CrossFitted(ids, folds, oof, n_folds, seed),
    )


def subjects_of(data: TrainingSet) -> list[str]:
    frame = data.frame
    if "subject_id" in frame.columns and frame.height == len(data):
        return [str(s) for s in frame["subject_id"].to_list()]
    return [str(i) for i in range(len(data))]


def cross_validate(
    bp: Blueprint, label: str, x: np.ndarray, y: np.ndarray, folds: np.ndarray, *, seed: int,
    weight: np.ndarray | None, out: np.ndarray,
) -> int:
    """The number of boosting rounds with the best mean held-out loss over ``folds`` (early
    stopping); writes each example's out-of-fold prediction for every action into ``out``
    (n, K) and returns the number of rounds."""
    names, categorical = model_inputs(bp)
    params = lgb_params(bp, label, seed)
    ds = lgb.Dataset(x, y, weight=weight, feature_name=names, categorical_feature=categorical, free_raw_data=False)
    splits = [(np.flatnonzero(folds != j), np.flatnonzero(folds == j)) for j in np.unique(folds)]
    cv = lgb.cv(params, ds, num_boost_round=bp.model.num_boost_round, folds=splits, stratified=False, shuffle=False,
                callbacks=[lgb.early_stopping(bp.model.early_stopping_rounds, verbose=False)], return_cvbooster=True)
    booster = cv["cvbooster"]
    best = max(int(booster.best_iteration or len(next(iter(v for k, v in cv.items() if k != "cvbooster")))), 1)
    n_actions = out.shape[1]
    for (_, test), fold_model in zip(splits, booster.boosters, strict=True):
        grid = action_grid(x[test][:, :-1], n_actions)
        out[test] = fold_model.predict(grid, num_iteration=best).reshape(test.size, n_actions)
    return best
