"""dbt models (staging → intermediate → marts) under each use case's asset keys."""


import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dagster import AssetExecutionContext, AssetKey, BackfillPolicy
from dagster_dbt import (
    DagsterDbtTranslator,
    DagsterDbtTranslatorSettings,
    DbtCliResource,
    dbt_assets,
)

from looper_pipelines.blueprints import Blueprint
from looper_pipelines.defs.partitions import DATA_STAGE, daily_partitions
from looper_pipelines.defs.resources import DBT_PROJECT_DIR, LooperHome

SOURCE_ASSETS = {"decisions": "decision_logs", "observations": "observation_logs"}


class UseCaseTranslator(DagsterDbtTranslator):
    """Puts the shared dbt models under ``[<use_case>, <model>]`` and maps the log
    sources to the use case's log assets."""

    def __init__(self, use_case: str) -> None:
        super().__init__(settings=DagsterDbtTranslatorSettings(enable_asset_checks=True))
        self.use_case = use_case

    def get_asset_key(self, dbt_resource_props: Mapping[str, Any]) -> AssetKey:
        name = dbt_resource_props["name"]
        if dbt_resource_props["resource_type"] == "source":
            return AssetKey([self.use_case, SOURCE_ASSETS.get(name, name)])
        return AssetKey([self.use_case, name])

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        return self.use_case

    def get_tags(self, dbt_resource_props: Mapping[str, Any]) -> Mapping[str, str]:
        return {**super().get_tags(dbt_resource_props), **DATA_STAGE}


def dbt_manifest(work_dir: Path) -> Path:
    """The dbt manifest under ``work_dir``, parsed when missing or older than the project."""
    target = work_dir
    manifest = target / "manifest.json"
    sources = [p for p in DBT_PROJECT_DIR.rglob("*") if p.suffix in {".sql", ".yml"} and "target" not in p.parts]
    newest = max((p.stat().st_mtime for p in sources), default=0.0)
    if manifest.exists() and manifest.stat().st_mtime >= newest:
        return manifest
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target) as tmp:
        env = {**os.environ, "DO_NOT_TRACK": "1", "DBT_LOG_PATH": tmp,
               "LOOPER_LOGS": os.environ.get("LOOPER_LOGS", "/nonexistent")}
        dbt = Path(sys.executable).with_name("dbt")
        subprocess.run(
            [str(dbt), "parse", "--quiet", "--project-dir", str(DBT_PROJECT_DIR), "--profiles-dir",
             str(DBT_PROJECT_DIR), "--target-path", tmp],
            check=True, env=env, capture_output=True,
        )
        os.replace(Path(tmp) / "manifest.json", manifest)
    return manifest


def dbt_vars(bp: Blueprint, start: str, end: str) -> dict[str, Any]:
    return {
        "use_case": bp.name,
        "labels": [
            {"name": lb.name, "window_hours": lb.window_hours, "aggregation": lb.aggregation, "fill_value": lb.fill_value}
            for lb in bp.labels
        ],
        "start_date": start,
        "end_date": end,
    }


def build_dbt_assets(bp: Blueprint, manifest: Path) -> Any:
    use_case = bp.name

    @dbt_assets(
        manifest=manifest,
        name=f"{use_case}_dbt_models",
        dagster_dbt_translator=UseCaseTranslator(use_case),
        partitions_def=daily_partitions,
        backfill_policy=BackfillPolicy.single_run(),
        pool="looper_warehouse",
    )
    def _models(context: AssetExecutionContext, dbt: DbtCliResource, looper_home: LooperHome):  # type: ignore[no-untyped-def]
        looper_home.dbt_env()
        blueprint = looper_home.blueprint(use_case)
        window = context.partition_time_window
        variables = dbt_vars(blueprint, window.start.strftime("%Y-%m-%d"), window.end.strftime("%Y-%m-%d"))
        # a persistent target per use case lets dbt reuse its parse (runs of a use case are serialised)
        target = looper_home.layout.root / "dbt" / "target" / use_case
        yield from dbt.cli(["build", "--vars", json.dumps(variables)], context=context, target_path=target).stream()

    return _models
