"""LightGBM per label, split by time: train on older days, validate on the newest."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import lightgbm as lgb
import numpy as np

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.training.dataset import ACTION_FEATURE, TrainingSet


@dataclass
class LabelModel:
    label: str
    task: str  # binary | regression
    booster: lgb.Booster
    best_iteration: int
    metrics: dict[str, float] = field(default_factory=dict)


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

    @property
    def metrics(self) -> dict[str, float]:
        out: dict[str, float] = {"n_train": float(self.n_train), "n_valid": float(self.n_valid)}
        for m in self.models.values():
            out.update({f"{m.label}.{k}": v for k, v in m.metrics.items()})
        return out


def time_split(data: TrainingSet, validation_days: int) -> np.ndarray:
    """Boolean mask of the validation rows: the newest ``validation_days`` days."""
    days = np.unique(data.day)
    if len(days) < 2:
        raise ValueError(f"need at least 2 days of examples to split by time, got {len(days)}")
    k = min(validation_days, len(days) - 1)
    return data.day >= days[-k]


def binary_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import log_loss, roc_auc_score

    p = np.clip(p, 1e-7, 1 - 1e-7)
    out = {"log_loss": float(log_loss(y, p, labels=[0, 1])), "mean_pred": float(p.mean()), "mean_label": float(y.mean())}
    out["auc"] = float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else float("nan")
    out["calibration_ratio"] = float(p.mean() / y.mean()) if y.mean() > 0 else float("nan")
    return out


def regression_metrics(y: np.ndarray, p: np.ndarray) -> dict[str, float]:
    return {"rmse": float(np.sqrt(np.mean((y - p) ** 2))), "mean_pred": float(p.mean()), "mean_label": float(y.mean())}


def train_models(bp: Blueprint, data: TrainingSet, seed: int = 0, shuffle_labels: bool = False) -> TrainedModels:
    """One model per label in ``bp.model_labels``; ``shuffle_labels`` (for tests and
    sanity baselines) permutes the training labels."""
    if len(data) < 20:
        raise ValueError(f"too few training examples ({len(data)})")
    valid = time_split(data, bp.model.validation_days)
    x = data.x_with_action
    feature_names = [*bp.feature_names, ACTION_FEATURE]
    categorical = [f.name for f in bp.features if f.type == "category"] + [ACTION_FEATURE]
    rng = np.random.default_rng(seed)
    models: dict[str, LabelModel] = {}
    for label in bp.model_labels:
        kind = bp.label(label).kind
        y = data.labels[label]
        y_train = rng.permutation(y[~valid]) if shuffle_labels else y[~valid]
        task = "binary" if kind == "binary" else "regression"
        params: dict[str, Any] = {
            "objective": task,
            "verbosity": -1,
            "seed": seed,
            "num_threads": 2,
            "deterministic": True,
            "force_row_wise": True,
            **bp.model.params,
        }
        train_set = lgb.Dataset(x[~valid], y_train, feature_name=feature_names, categorical_feature=categorical, free_raw_data=False)
        valid_set = lgb.Dataset(x[valid], y[valid], reference=train_set)
        booster = lgb.train(
            params,
            train_set,
            num_boost_round=bp.model.num_boost_round,
            valid_sets=[valid_set],
            callbacks=[lgb.early_stopping(bp.model.early_stopping_rounds, verbose=False)],
        )
        best = booster.best_iteration or booster.current_iteration()
        booster = lgb.Booster(model_str=booster.model_to_string(num_iteration=best))
        pred = booster.predict(x[valid])
        metrics = binary_metrics(y[valid], pred) if task == "binary" else regression_metrics(y[valid], pred)
        models[label] = LabelModel(label, task, booster, best, metrics)
    days = data.day
    return TrainedModels(
        models=models,
        feature_names=feature_names,
        categorical=categorical,
        train_days=(int(days[~valid].min()), int(days[~valid].max())),
        valid_days=(int(days[valid].min()), int(days[valid].max())),
        n_train=int((~valid).sum()),
        n_valid=int(valid.sum()),
        valid_mask=valid,
    )
