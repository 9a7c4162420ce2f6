"""Build the Dagster definitions for a home: one asset group per blueprint found.

The home folder comes from ``$LOOPER_HOME`` (default ``./.looper``); MLflow tracks to
``$MLFLOW_TRACKING_URI`` or a SQLite store under the home.

A broken blueprint (or one whose definitions Dagster refuses) never takes the code location
down: its use case is left out, a warning naming the file and the problem is logged, and the
problem is listed in the code location's metadata under ``looper/broken_blueprints``.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

from dagster import Definitions, MetadataValue
from dagster_dbt import DbtCliResource

from looper_pipelines.blueprints import scan_catalog
from looper_pipelines.defs.dbt import dbt_manifest
from looper_pipelines.defs.factory import build_use_case_defs
from looper_pipelines.defs.resources import DBT_PROJECT_DIR, LooperHome, MlflowTracking
from looper_pipelines.home import HomeLayout

log = logging.getLogger(__name__)


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
    catalog = scan_catalog(layout.root)
    broken = {name: str(e) for name, e in catalog.broken.items()}
    per_use_case = []
    for name, bp in catalog.blueprints.items():
        try:
            per_use_case.append(build_use_case_defs(bp, manifest))
        except Exception as e:  # one use case must not take the others down
            broken[name] = f"{name}: Dagster refused its definitions: {type(e).__name__}: {e}"[:1000]
    for problem in broken.values():
        log.warning("Looper: use case left out of the Dagster definitions, its blueprint is broken: %s", problem)
    metadata = {"looper/broken_blueprints": MetadataValue.json(broken)} if broken else {}
    return Definitions.merge(*per_use_case, Definitions(resources=resources, metadata=metadata))


