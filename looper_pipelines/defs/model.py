"""trained_model and offline_evaluation."""


from typing import Any

import numpy as np
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from looper_pipelines.defs.partitions import MODEL_STAGE
from looper_pipelines.defs.resources import LooperHome, MlflowTracking


def build_model_assets(use_case: str) -> list[Any]:
    @asset(
        key=AssetKey([use_case, "trained_model"]),
        deps=[AssetKey([use_case, "fct_training_examples"])],
        group_name=use_case,
        tags=MODEL_STAGE,
        kinds={"lightgbm", "mlflow"},
        description="LightGBM per label (rounds by cross-validation over subjects, out-of-fold predictions kept, "
                    "refitted on every example); registered in MLflow as the challenger.",
    )
    def trained_model(context: AssetExecutionContext, looper_home: LooperHome, mlflow_tracking: MlflowTracking) -> MaterializeResult:
        from looper_pipelines.evaluation.holdout import all_examples
        from looper_pipelines.promotion.flow import served_mixing
        from looper_pipelines.quality.outcomes import failed_blocking_checks
        from looper_pipelines.training import train_models
        from looper_pipelines.training.registration import register_challenger

        failed = failed_blocking_checks(looper_home.layout, use_case)
        if failed:
            raise ValueError(f"not training {use_case}: blocking data-quality checks failed: {failed}")
        bp = looper_home.blueprint(use_case)
        data = all_examples(bp, looper_home.layout.warehouse)
        trained = train_models(bp, data, seed=0)
        reg = mlflow_tracking.registry()
        version = register_challenger(reg, bp, data, trained)
        mixing = served_mixing(version, bp)
        context.log.info("registered %s version %s as challenger", use_case, version.version)
        return MaterializeResult(metadata={
            "model_version": version.version, "run_id": version.run_id, "tracking_uri": reg.tracking_uri,
            "partitions": version.tags["partitions"], "n_examples": len(data), "n_train": trained.n_train,
            "n_valid": trained.n_valid, "crossfit_folds": bp.model.crossfit_folds,
            "boosting_rounds": MetadataValue.json(trained.rounds),
            "exploration_epsilon": mixing.epsilon, "experiment_share": mixing.experiment_share,
            **{k: float(v) for k, v in trained.metrics.items() if np.isfinite(v)},
        })

    @asset(
        key=AssetKey([use_case, "offline_evaluation"]),
        deps=[trained_model],
        group_name=use_case,
        tags=MODEL_STAGE,
        kinds={"mlflow"},
        description="Holdout metrics, calibration, feature importance and off-policy value of the policy.",
    )
    def offline_evaluation(context: AssetExecutionContext, looper_home: LooperHome, mlflow_tracking: MlflowTracking) -> MaterializeResult:
        from looper_pipelines.evaluation import plots
        from looper_pipelines.evaluation.holdout import all_examples, crossfitted_data
        from looper_pipelines.evaluation.policy_value import evaluate_policy, uniform_random_value
        from looper_pipelines.features import input_names
        from looper_pipelines.promotion.flow import policy_params, served_mixing
        from looper_pipelines.registry import CHALLENGER
        from looper_pipelines.training.crossfit import load_crossfit

        bp = looper_home.blueprint(use_case)
        reg = mlflow_tracking.registry()
        version = reg.by_alias(use_case, CHALLENGER)
        if version is None:
            raise ValueError(f"no challenger registered for {use_case}")
        models = reg.load_label_models(version)
        examples = all_examples(bp, looper_home.layout.warehouse)
        crossfit = load_crossfit(reg, version, bp, examples.frame["decision_id"].to_list())
        logged = crossfitted_data(examples, crossfit)
        # the declared policy on every example, each scored by models that never saw it
        values = evaluate_policy(bp, logged, policy_params(None, bp), mixing=served_mixing(version, bp))
        if bp.decision.kind == "multi_action":  # a reference any logging policy can be compared to
            for est in ("ips", "snips"):
                values[f"uniform_random_{est}"] = uniform_random_value(bp, examples.labels, examples.propensity, est)
        figures: dict[str, Any] = {}
        md: dict[str, Any] = {}
        feature_names = input_names(bp)
        rows = np.arange(len(examples))
        for label, m in models.items():
            if bp.label(label).kind == "binary":  # out-of-fold predictions of the logged action
                p = crossfit.scores[label][rows, examples.action]
                figures[f"plots/calibration_{label}.png"] = plots.calibration_figure(
                    examples.labels[label], p, f"calibration (out of fold): {label}")
            figures[f"plots/importance_{label}.png"] = plots.importance_figure(
                feature_names, m.feature_importance(importance_type="gain"), f"importance: {label}")
        ope = {name: {"value": v.value, "ci_low": v.ci_low, "ci_high": v.ci_high, "n": v.n} for name, v in values.items()}
        reg.log_to_run(version.run_id, {f"ope.{n}.value": v["value"] for n, v in ope.items()},
                       {**figures, "evaluation/off_policy.json": ope})
        for path, fig in figures.items():
            md[path.removeprefix("plots/").removesuffix(".png")] = MetadataValue.md(plots.to_markdown_image(fig))
        return MaterializeResult(metadata={
            "model_version": version.version,
            **{f"ope_{n}": MetadataValue.json(v) for n, v in ope.items()},
            **{k: float(v) for k, v in version.metrics.items() if "." in k and np.isfinite(v)},
            **md,
        })

    return [trained_model, offline_evaluation]
