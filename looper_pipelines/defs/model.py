"""trained_model and offline_evaluation."""


from typing import Any

import numpy as np
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from looper_pipelines.defs.resources import LooperHome, MlflowTracking


def build_model_assets(use_case: str) -> list[Any]:
    @asset(
        key=AssetKey([use_case, "trained_model"]),
        deps=[AssetKey([use_case, "fct_training_examples"])],
        group_name=use_case,
        kinds={"lightgbm", "mlflow"},
        description="LightGBM per label, split by time; registered in MLflow as the challenger.",
    )
    def trained_model(context: AssetExecutionContext, looper_home: LooperHome, mlflow_tracking: MlflowTracking) -> MaterializeResult:
        from looper_pipelines.defs.checks import failed_blocking_checks
        from looper_pipelines.evaluation.holdout import all_examples
        from looper_pipelines.training import train_models

        failed = failed_blocking_checks(looper_home, use_case)
        if failed:
            raise ValueError(f"not training {use_case}: blocking data-quality checks failed: {failed}")
        bp = looper_home.blueprint(use_case)
        data = all_examples(bp, looper_home.layout.warehouse)
        trained = train_models(bp, data)
        dates = sorted({str(d) for d in data.frame["decision_date"].unique().to_list()})
        reg = mlflow_tracking.registry()
        version = reg.log_training(
            use_case,
            params={"blueprint_version": bp.version, "lineage_version": bp.lineage_version,
                    **{f"lgb.{k}": v for k, v in bp.model.params.items()},
                    **{f"best_iteration.{m.label}": m.best_iteration for m in trained.models.values()}},
            metrics=trained.metrics,
            tags={"use_case": use_case, "blueprint_version": bp.version, "lineage_version": bp.lineage_version,
                  "partitions": f"{dates[0]}..{dates[-1]}", "n_days": str(len(dates))},
            label_models={k: m.booster for k, m in trained.models.items()},
            primary_label=bp.score_label,
            example_input=data.x_with_action,
            feature_names=trained.feature_names,
        )
        context.log.info("registered %s version %s as challenger", use_case, version.version)
        return MaterializeResult(metadata={
            "model_version": version.version, "run_id": version.run_id, "tracking_uri": reg.tracking_uri,
            "partitions": f"{dates[0]}..{dates[-1]}", "n_train": trained.n_train, "n_valid": trained.n_valid,
            **{k: float(v) for k, v in trained.metrics.items() if np.isfinite(v)},
        })

    @asset(
        key=AssetKey([use_case, "offline_evaluation"]),
        deps=[trained_model],
        group_name=use_case,
        kinds={"mlflow"},
        description="Holdout metrics, calibration, feature importance and off-policy value of the policy.",
    )
    def offline_evaluation(context: AssetExecutionContext, looper_home: LooperHome, mlflow_tracking: MlflowTracking) -> MaterializeResult:
        from looper_pipelines.evaluation import plots
        from looper_pipelines.evaluation.holdout import all_examples, holdout, logged_data
        from looper_pipelines.evaluation.policy_value import evaluate_policy, uniform_random_value
        from looper_pipelines.registry import CHALLENGER

        bp = looper_home.blueprint(use_case)
        reg = mlflow_tracking.registry()
        version = reg.by_alias(use_case, CHALLENGER)
        if version is None:
            raise ValueError(f"no challenger registered for {use_case}")
        models = reg.load_label_models(version)
        examples = all_examples(bp, looper_home.layout.warehouse)
        valid = holdout(bp, examples)
        values = evaluate_policy(bp, logged_data(bp, valid, models))
        if bp.decision.kind == "multi_action":  # a reference any logging policy can be compared to
            for est in ("ips", "snips"):
                values[f"uniform_random_{est}"] = uniform_random_value(bp, examples.labels, examples.propensity, est)
        figures: dict[str, Any] = {}
        md: dict[str, Any] = {}
        feature_names = [*bp.feature_names, "action"]
        for label, m in models.items():
            p = m.predict(valid.x_with_action)
            if bp.label(label).kind == "binary":
                figures[f"plots/calibration_{label}.png"] = plots.calibration_figure(valid.labels[label], p, f"calibration: {label}")
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
