"""tuned_policy: Optuna over the policy parameters for the product objective."""


import json
from typing import Any

import numpy as np
from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from looper_pipelines.defs.partitions import MODEL_STAGE
from looper_pipelines.defs.resources import LooperHome, MlflowTracking


def build_policy_assets(use_case: str) -> list[Any]:
    @asset(
        key=AssetKey([use_case, "tuned_policy"]),
        deps=[AssetKey([use_case, "offline_evaluation"])],
        group_name=use_case,
        tags=MODEL_STAGE,
        kinds={"optuna", "mlflow"},
        description="Policy parameters tuned on cross-fitted doubly robust scores under guardrails; "
                    "accepted over the declared ones only for a held-out gain with a positive lower bound.",
    )
    def tuned_policy(context: AssetExecutionContext, looper_home: LooperHome, mlflow_tracking: MlflowTracking) -> MaterializeResult:
        from looper_pipelines.evaluation import plots
        from looper_pipelines.evaluation.holdout import all_examples, crossfitted_data
        from looper_pipelines.promotion.flow import served_mixing
        from looper_pipelines.registry import CHALLENGER
        from looper_pipelines.training.crossfit import load_crossfit
        from looper_pipelines.tuning import tune_policy
        from looper_pipelines.tuning.optuna_tuner import pareto_mask

        bp = looper_home.blueprint(use_case)
        reg = mlflow_tracking.registry()
        version = reg.by_alias(use_case, CHALLENGER)
        if version is None:
            raise ValueError(f"no challenger registered for {use_case}")
        examples = all_examples(bp, looper_home.layout.warehouse)
        crossfit = load_crossfit(reg, version, bp, examples.frame["decision_id"].to_list())
        result = tune_policy(bp, crossfitted_data(examples, crossfit), crossfit.folds, seed=0,
                             mixing=served_mixing(version, bp))
        context.log.info("%s policy: %s", use_case, result.reason)
        reg.set_version_tags(use_case, version.version, {
            "policy_params": json.dumps(result.params, sort_keys=True),
            "policy_version": result.policy_version,
            "policy_value_dr": f"{result.value:.6f}",
            "policy_feasible": str(result.feasible),
            "policy_tuned": str(result.accepted),
            "policy_tuning": result.reason[:4000],
        })
        md: dict[str, Any] = {}
        artifacts: dict[str, Any] = {"tuning/result.json": {**result.to_dict(), "trials": result.trials}}
        if result.trials:
            vals = np.array([t["value"] for t in result.trials])
            hist = plots.line_figure(np.arange(len(vals)), {"trial value": vals, "best so far": np.maximum.accumulate(vals)},
                                     f"tuning history: {use_case}", "trial", "DR objective estimate")
            artifacts["plots/tuning_history.png"] = hist
            gkeys = [k for k in result.trials[0] if k.startswith("guardrail_")]
            if gkeys:
                cost = np.array([t[gkeys[0]] for t in result.trials])
                front = plots.scatter_figure(cost, vals, pareto_mask(vals, cost), f"trade-off: {use_case}",
                                             gkeys[0].removeprefix("guardrail_") + " increase", "objective")
                artifacts["plots/pareto_front.png"] = front
        reg.log_to_run(version.run_id, {"policy.value_dr": result.value}, artifacts)
        for path, obj in artifacts.items():
            if path.endswith(".png"):
                md[path.removeprefix("plots/").removesuffix(".png")] = MetadataValue.md(plots.to_markdown_image(obj))
        return MaterializeResult(metadata={
            "model_version": version.version, "policy_version": result.policy_version,
            "params": MetadataValue.json(result.params), "tuned_accepted": result.accepted,
            "decision": result.reason, "declared": MetadataValue.json(result.declared),
            "tuned": MetadataValue.json(result.tuned), "improvement": MetadataValue.json(result.improvement),
            "uncertainty": MetadataValue.json(result.uncertainty), "value_dr": result.value,
            "greedy_value_dr": result.greedy_value, "exploration_and_experiment_cost_dr": result.mixing_cost,
            "guardrails": MetadataValue.json(result.guardrails), "feasible": result.feasible,
            "trials": len(result.trials), **md,
        })

    return [tuned_policy]
