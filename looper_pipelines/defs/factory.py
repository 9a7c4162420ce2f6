"""Everything Dagster knows about one use case, generated from its blueprint."""

from __future__ import annotations

from pathlib import Path

from dagster import AssetKey, AssetSelection, Definitions, ScheduleDefinition, define_asset_job

from looper_pipelines.blueprints import Blueprint
from looper_pipelines.defs.causal import build_causal_assets
from looper_pipelines.defs.checks import build_log_checks
from looper_pipelines.defs.dbt import build_dbt_assets
from looper_pipelines.defs.logs import build_log_assets
from looper_pipelines.defs.model import build_model_assets
from looper_pipelines.defs.partitions import daily_partitions
from looper_pipelines.defs.policy import build_policy_assets
from looper_pipelines.defs.promotion import build_promotion_assets
from looper_pipelines.defs.serving import build_serving_assets

MODEL_CHAIN = ("trained_model", "offline_evaluation", "hte_evaluation", "tuned_policy", "promotion",
               "serving_artifact", "published_deployment")


def data_job_name(use_case: str) -> str:
    return f"{use_case}_data"


def model_job_name(use_case: str) -> str:
    return f"{use_case}_model"


def build_use_case_defs(bp: Blueprint, dbt_manifest: Path) -> Definitions:
    uc = bp.name
    assets = [build_log_assets(uc), build_dbt_assets(bp, dbt_manifest), *build_model_assets(uc), *build_causal_assets(uc),
              *build_policy_assets(uc), *build_promotion_assets(uc), *build_serving_assets(uc)]
    model_keys = [AssetKey([uc, n]) for n in MODEL_CHAIN]
    data = AssetSelection.groups(uc) - AssetSelection.assets(*model_keys)
    data_job = define_asset_job(data_job_name(uc), selection=data, partitions_def=daily_partitions,
                                description=f"{uc}: logs → dbt joins → data-quality checks, by day")
    model_job = define_asset_job(model_job_name(uc), selection=AssetSelection.assets(*model_keys),
                                 description=f"{uc}: train → evaluate → HTE → tune → promote → compile → publish")
    schedules = [
        ScheduleDefinition(name=f"{uc}_daily_data", job=data_job, cron_schedule=bp.schedule.cron,
                           default_status=_status(bp)),
    ]
    return Definitions(assets=assets, asset_checks=[build_log_checks(bp)], jobs=[data_job, model_job],
                       schedules=schedules)


def _status(bp: Blueprint):  # type: ignore[no-untyped-def]
    from dagster import DefaultScheduleStatus

    return DefaultScheduleStatus.RUNNING if bp.schedule.enabled else DefaultScheduleStatus.STOPPED
