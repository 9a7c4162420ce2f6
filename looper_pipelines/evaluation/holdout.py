"""The examples of a model job: all of them, the time-based holdout (the newest), and their
logged-data views for off-policy evaluation (with a model's scores, or out of fold)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.evaluation.policy_value import LoggedData
from looper_pipelines.evaluation.scoring import action_scores
from looper_pipelines.training.crossfit import CrossFitted
from looper_pipelines.training.dataset import TrainingSet, encode_examples, load_training_examples
from looper_pipelines.training.trainer import holdout_mask


def all_examples(bp: Blueprint, warehouse: str | Path) -> TrainingSet:
    return encode_examples(bp, load_training_examples(warehouse, bp.name))


def holdout(bp: Blueprint, data: TrainingSet) -> TrainingSet:
    return data.subset(holdout_mask(bp, data))


def logged_data(bp: Blueprint, data: TrainingSet, models: Mapping[str, Any]) -> LoggedData:
    return LoggedData(
        action=data.action.astype(np.int64),
        propensity=data.propensity,
        labels=data.labels,
        scores=action_scores(models, data.x, len(bp.decision.actions)),
    )


def crossfitted_data(data: TrainingSet, cf: CrossFitted) -> LoggedData:
    """The logged data scored out of fold (``cf`` aligned to ``data``'s rows)."""
    return LoggedData(action=data.action.astype(np.int64), propensity=data.propensity, labels=data.labels,
                      scores=cf.scores)


def primary_metric(bp: Blueprint) -> str:
    lb = bp.score_label
    return f"{lb}.log_loss" if bp.label(lb).kind == "binary" else f"{lb}.rmse"


def logged_action_loss(bp: Blueprint, data: TrainingSet, scores: Mapping[str, np.ndarray],
                       rows: np.ndarray | None = None) -> float:
    """The primary metric (lower is better) of per-action predictions ``scores`` at the
    logged actions of ``data`` (on ``rows``, all when None)."""
    from looper_pipelines.training.trainer import binary_metrics, regression_metrics

    lb = bp.score_label
    idx = np.arange(len(data)) if rows is None else rows
    p = np.asarray(scores[lb])[idx, data.action[idx]]
    y = data.labels[lb][idx]
    if bp.label(lb).kind == "binary":
        return binary_metrics(y, p)["log_loss"]
    return regression_metrics(y, p)["rmse"]
