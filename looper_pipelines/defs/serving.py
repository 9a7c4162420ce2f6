"""serving_artifact (compiled champion), its blocking parity check, and publication."""


from typing import Any

from dagster import (
    AssetCheckResult,
    AssetCheckSpec,
    AssetExecutionContext,
    AssetKey,
    MaterializeResult,
    asset,
)

from looper_pipelines.defs.partitions import MODEL_STAGE
from looper_pipelines.defs.resources import LooperHome, MlflowTracking
from looper_pipelines.serving.publish import PARITY_TOLERANCE


def build_serving_assets(use_case: str) -> list[Any]:
    key = AssetKey([use_case, "serving_artifact"])

    @asset(
        key=key,
        deps=[AssetKey([use_case, "promotion"])],
        group_name=use_case,
        tags=MODEL_STAGE,
        kinds={"treelite"},
        check_specs=[AssetCheckSpec("compiled_parity", asset=key, blocking=True,
                                    description=f"compiled predictions within {PARITY_TOLERANCE} of LightGBM")],
        description="The champion compiled by Treelite/TL2cgen into a shared library with a manifest.",
    )
    def serving_artifact(context: AssetExecutionContext, looper_home: LooperHome, mlflow_tracking: MlflowTracking):  # type: ignore[no-untyped-def]
        from looper_pipelines.promotion.flow import build_and_check_champion
        from looper_pipelines.registry import CHAMPION
        from looper_pipelines.serving.publish import version_dir

        bp = looper_home.blueprint(use_case)
        layout = looper_home.layout
        registry = mlflow_tracking.registry()
        if registry.by_alias(use_case, CHAMPION) is None:
            looper_home.write_state(f"serving/{use_case}.json", {"built": None, "parity_ok": False})
            yield MaterializeResult(metadata={"status": "no champion yet: the default action keeps serving"})
            yield AssetCheckResult(check_name="compiled_parity", passed=True, description="nothing to compile")
            return
        built = build_and_check_champion(layout, registry, bp)
        vid = built.version_id
        looper_home.write_state(f"serving/{use_case}.json", {"built": vid, "parity_ok": built.parity_ok})
        yield MaterializeResult(metadata={"serving_version": vid, "model_version": built.model_version,
                                          "path": str(version_dir(layout, use_case, vid)), "max_abs_diff": built.max_abs_diff})
        yield AssetCheckResult(check_name="compiled_parity", passed=built.parity_ok,
                               metadata={"max_abs_diff": built.max_abs_diff, "rows": built.rows,
                                         **{f"diff_{k}": v for k, v in built.diffs.items()}})

    @asset(
        key=AssetKey([use_case, "published_deployment"]),
        deps=[serving_artifact],
        group_name=use_case,
        tags=MODEL_STAGE,
        description="Points the decision service at the parity-checked artifact (hot reload).",
    )
    def published_deployment(context: AssetExecutionContext, looper_home: LooperHome) -> MaterializeResult:
        from looper_pipelines.serving.manifest import ArtifactError
        from looper_pipelines.serving.publish import activate
        from looper_pipelines.serving.runtime import describe_failure, verify_version

        state = looper_home.read_state(f"serving/{use_case}.json")
        if state.get("built") is None:
            return MaterializeResult(metadata={"status": "no champion yet: nothing published"})
        if not state.get("parity_ok"):
            raise ValueError(f"serving artifact {state.get('built')} failed its parity check; not publishing")
        try:  # its files may have changed since the parity check
            verify_version(looper_home.layout, looper_home.blueprint(use_case), state["built"])
        except ArtifactError as e:
            raise ValueError(f"serving artifact {state['built']} does not verify ({describe_failure(e)}); "
                             "not publishing") from None
        activate(looper_home.layout, use_case, state["built"])
        return MaterializeResult(metadata={"serving_version": state["built"]})

    return [serving_artifact, published_deployment]
