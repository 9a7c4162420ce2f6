"""Register trained label models as a use case's challenger, with everything the later
steps need: the out-of-fold predictions, the exploration it will be served with and the
newest decision it has seen."""

from __future__ import annotations

from typing import Any

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.policies import Mixing
from looper_pipelines.training.crossfit import log_crossfit
from looper_pipelines.training.dataset import TrainingSet, trained_through_us
from looper_pipelines.training.trainer import TrainedModels


def register_challenger(registry: Any, bp: Blueprint, data: TrainingSet, trained: TrainedModels) -> Any:
    """Log the training run, register its models as the challenger and store its
    out-of-fold predictions; returns the registered version."""
    crossfit = trained.crossfit
    if crossfit is None:
        raise ValueError("trained models without out-of-fold predictions cannot be judged; train with train_models")
    n_examples = len(data)
    mixing = Mixing.for_examples(bp, n_examples)
    dates = sorted({str(d) for d in data.frame["decision_date"].unique().to_list()}) if (
        "decision_date" in data.frame.columns) else ["-"]
    version = registry.log_training(
        bp.name,
        params={"blueprint_version": bp.version, "lineage_version": bp.lineage_version,
                **{f"lgb.{k}": v for k, v in bp.model.params.items()},
                **{f"best_iteration.{m.label}": m.best_iteration for m in trained.models.values()},
                "crossfit_folds": crossfit.n_folds, "crossfit_seed": crossfit.seed},
        metrics=trained.metrics,
        tags={"use_case": bp.name, "blueprint_version": bp.version, "lineage_version": bp.lineage_version,
              "partitions": f"{dates[0]}..{dates[-1]}", "n_days": str(len(dates)), "n_examples": str(n_examples),
              "exploration_epsilon": repr(mixing.epsilon), "experiment_share": repr(mixing.experiment_share),
              "crossfit_seed": str(crossfit.seed), "trained_through_us": str(trained_through_us(data))},
        label_models={k: m.booster for k, m in trained.models.items()},
        primary_label=bp.score_label,
        example_input=data.x_with_action,
        feature_names=trained.feature_names,
    )
    log_crossfit(registry, version.run_id, crossfit)
    return version
