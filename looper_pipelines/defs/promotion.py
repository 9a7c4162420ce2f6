"""promotion: the gate between challenger and champion."""


from typing import Any

from dagster import AssetExecutionContext, AssetKey, MaterializeResult, MetadataValue, asset

from looper_pipelines.defs.partitions import MODEL_STAGE
from looper_pipelines.defs.resources import LooperHome, MlflowTracking
from looper_pipelines.quality.outcomes import failed_blocking_checks


def build_promotion_assets(use_case: str) -> list[Any]:
    @asset(
        key=AssetKey([use_case, "promotion"]),
        deps=[AssetKey([use_case, "tuned_policy"]), AssetKey([use_case, "hte_evaluation"])],
        group_name=use_case,
        tags=MODEL_STAGE,
        kinds={"mlflow"},
        description="Moves the champion alias to the challenger when every gate passes; records why.",
    )
    def promotion(context: AssetExecutionContext, looper_home: LooperHome, mlflow_tracking: MlflowTracking) -> MaterializeResult:
        from looper_pipelines.promotion.flow import evaluate_and_promote

        bp = looper_home.blueprint(use_case)
        result = evaluate_and_promote(looper_home.layout, mlflow_tracking.registry(), bp,
                                      failed_blocking_checks(looper_home.layout, use_case))
        context.log.info("promotion of %s: %s", use_case, "; ".join(result.get("reasons", [])))
        return MaterializeResult(metadata={
            "promoted": bool(result["promote"]),
            "champion": str(result.get("champion")),
            "challenger": str(result.get("challenger")),
            "reasons": MetadataValue.md("\n".join(f"- {r}" for r in result.get("reasons", []))),
            "lift": MetadataValue.json(result.get("lift", {})),
        })

    return [promotion]
