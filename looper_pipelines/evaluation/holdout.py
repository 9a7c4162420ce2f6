"""The time-based holdout (newest days of the mart) and its logged-data view."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.evaluation.policy_value import LoggedData
from looper_pipelines.evaluation.scoring import action_scores
from looper_pipelines.training.dataset import TrainingSet, encode_examples, load_training_examples
from looper_pipelines.training.trainer import time_split


def all_examples(bp: Blueprint, warehouse: str | Path) -> TrainingSet:
    return encode_examples(bp, load_training_examples(warehouse, bp.name))


def holdout(bp: Blueprint, data: TrainingSet) -> TrainingSet:
    return data.subset(time_split(data, bp.model.validation_days))


def tuning_and_gate(bp: Blueprint, data: TrainingSet) -> tuple[TrainingSet, TrainingSet]:
    """Split the holdout in a fixed way: policy tuning picks parameters on a third, the
    promotion gate judges them on the other two thirds, so the gate is not fooled by the
    optimiser's own luck on the data it searched."""
    import polars as pl

    # by subject and time rather than by the id, whose process prefix is random: the same
    # logs always split the same way
    key = pl.concat_str([pl.col("subject_id"), pl.col("decided_at").cast(pl.Utf8)])
    gate = data.frame.select((key.hash(seed=7) % 3 != 0).alias("gate"))["gate"].to_numpy()
    return data.subset(~gate), data.subset(gate)


def logged_data(bp: Blueprint, data: TrainingSet, models: Mapping[str, Any]) -> LoggedData:
    return LoggedData(
        action=data.action.astype(np.int64),
        propensity=data.propensity,
        labels=data.labels,
        scores=action_scores(models, data.x, len(bp.decision.actions)),
    )


def primary_metric(bp: Blueprint) -> str:
    lb = bp.score_label
    return f"{lb}.log_loss" if bp.label(lb).kind == "binary" else f"{lb}.rmse"


def holdout_loss(bp: Blueprint, data: TrainingSet, models: Mapping[str, Any]) -> float:
    """The primary holdout metric (lower is better) of ``models`` on ``data``."""
    from looper_pipelines.training.trainer import binary_metrics, regression_metrics

    lb = bp.score_label
    p = models[lb].predict(data.x_with_action)
    y = data.labels[lb]
    if bp.label(lb).kind == "binary":
        return binary_metrics(y, p)["log_loss"]
    return regression_metrics(y, p)["rmse"]
