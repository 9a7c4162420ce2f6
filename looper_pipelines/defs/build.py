"""Build the Dagster definitions for a home: one asset group per blueprint found.

The home folder comes from ``$LOOPER_HOME`` (default ``./.looper``); MLflow tracks to
``$MLFLOW_TRACKING_URI`` or a SQLite store under the home.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from dagster import Definitions
from dagster_dbt import DbtCliResource

from looper_pipelines.blueprints import load_catalog
from looper_pipelines.defs.dbt import dbt_manifest
from looper_pipelines.defs.factory import build_use_case_defs
from looper_pipelines.defs.resources import DBT_PROJECT_DIR, LooperHome, MlflowTracking
from looper_pipelines.home import HomeLayout


def build_definitions(home: str | None = None) -> Definitions:
    layout = HomeLayout.of(home)
    LooperHome(home=str(layout.root)).dbt_env()
    resources = {
        "looper_home": LooperHome(home=str(layout.root)),
        "mlflow_tracking": MlflowTracking(
            tracking_uri=os.environ.get("MLFLOW_TRACKING_URI", layout.tracking_uri),
            artifact_root=str(layout.artifact_root),
        ),
        "dbt": DbtCliResource(
            project_dir=str(DBT_PROJECT_DIR),
            profiles_dir=str(DBT_PROJECT_DIR),
            dbt_executable=str(Path(sys.executable).with_name("dbt")),
        ),
    }
    manifest = dbt_manifest(layout.root / "dbt")
    per_use_case = [build_use_case_defs(bp, manifest) for bp in load_catalog(layout.root).values()]
    return Definitions.merge(*per_use_case, Definitions(resources=resources))


