"""Resources shared by every use case's assets."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from dagster import ConfigurableResource

from looper_pipelines.blueprints import Blueprint, load_catalog
from looper_pipelines.home import HomeLayout
from looper_pipelines.registry import ModelRegistry

DBT_PROJECT_DIR = Path(__file__).resolve().parents[2] / "dbt_project"


class LooperHome(ConfigurableResource):
    """The Looper home folder (logs, warehouse, serving artifacts, state)."""

    home: str

    @property
    def layout(self) -> HomeLayout:
        return HomeLayout.of(self.home)

    def blueprint(self, use_case: str) -> Blueprint:
        return load_catalog(self.layout.root)[use_case]

    def dbt_env(self) -> None:
        """Point dbt (which reads the environment) at this home's logs and warehouse."""
        lay = self.layout
        lay.warehouse.parent.mkdir(parents=True, exist_ok=True)
        os.environ["LOOPER_LOGS"] = str(lay.logs)
        os.environ["LOOPER_WAREHOUSE"] = str(lay.warehouse)
        os.environ.setdefault("DO_NOT_TRACK", "1")

    def read_state(self, name: str) -> dict[str, Any]:
        p = self.layout.state / name
        return json.loads(p.read_text()) if p.exists() else {}

    def write_state(self, name: str, doc: dict[str, Any]) -> None:
        p = self.layout.state / name
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_suffix(".tmp")
        tmp.write_text(json.dumps(doc, indent=2, sort_keys=True, default=str))
        os.replace(tmp, p)


class MlflowTracking(ConfigurableResource):
    """MLflow tracking store and registry (SQLite + local artifacts under the home by
    default; a tracking server URI in production)."""

    tracking_uri: str
    artifact_root: str

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.tracking_uri, self.artifact_root)
