"""A small wrapper around MLflow tracking and the model registry for Looper's needs.

Each use case has an experiment ``looper/<use_case>`` and a registered model
``looper-<use_case>``. A training run logs parameters, metrics, the feature schema, the
blueprint version, the data partitions and every label's model in LightGBM's native text
format; the score label's model is also logged as an MLflow LightGBM model with a signature
and registered. Aliases: ``challenger`` (newest trained), ``champion`` (serving).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightgbm as lgb
import mlflow
import numpy as np
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

CHAMPION = "champion"
CHALLENGER = "challenger"
LABEL_MODELS = "label_models"
# MLflow's fluent API has one process-wide tracking URI: one registry at a time uses it
_FLUENT = threading.RLock()


def registered_model_name(use_case: str) -> str:
    return f"looper-{use_case}"


@dataclass(frozen=True)
class RegisteredVersion:
    use_case: str
    version: str
    run_id: str
    tags: dict[str, str]
    metrics: dict[str, float]
    aliases: list[str]


class ModelRegistry:
    def __init__(self, tracking_uri: str, artifact_root: str | Path) -> None:
        self.tracking_uri = tracking_uri
        self.artifact_root = Path(artifact_root)
        self.artifact_root.mkdir(parents=True, exist_ok=True)
        self.client = MlflowClient(tracking_uri=tracking_uri)

    @contextlib.contextmanager
    def _fluent(self) -> Iterator[None]:
        """Point MLflow's fluent API (``start_run``, ``log_*``, artifact downloads), which
        reads one process-wide tracking URI, at this registry. ``mlflow.set_tracking_uri``
        also writes ``MLFLOW_TRACKING_URI`` into the environment, where it would pass for
        the user's setting and send every later home in this process to this store: the
        environment is put back. Registries of other homes in other threads wait."""
        with _FLUENT:
            before = os.environ.get("MLFLOW_TRACKING_URI")
            mlflow.set_tracking_uri(self.tracking_uri)
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = before
            yield

    # -- experiments and runs -------------------------------------------------------------
    def experiment_id(self, use_case: str) -> str:
        name = f"looper/{use_case}"
        exp = self.client.get_experiment_by_name(name)
        if exp is not None:
            return exp.experiment_id
        try:
            return self.client.create_experiment(name, artifact_location=(self.artifact_root / use_case).as_uri())
        except MlflowException:  # created concurrently
            exp = self.client.get_experiment_by_name(name)
            assert exp is not None
            return exp.experiment_id

    def log_training(
        self,
        use_case: str,
        *,
        params: dict[str, Any],
        metrics: dict[str, float],
        tags: dict[str, str],
        label_models: dict[str, lgb.Booster],
        primary_label: str,
        example_input: np.ndarray,
        feature_names: list[str],
        artifacts: dict[str, Any] | None = None,
    ) -> RegisteredVersion:
        """Log a training run, register its model and point ``challenger`` at it."""
        from mlflow.models import infer_signature

        name = registered_model_name(use_case)
        with self._fluent(), mlflow.start_run(experiment_id=self.experiment_id(use_case), run_name=f"train-{use_case}") as run:
            mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
            mlflow.set_tags(tags)
            mlflow.log_dict({"features": feature_names}, "feature_schema.json")
            with tempfile.TemporaryDirectory() as tmp:
                for label, booster in label_models.items():
                    p = Path(tmp) / f"{label}.txt"
                    booster.save_model(str(p))
                    mlflow.log_artifact(str(p), LABEL_MODELS)
            for path, obj in (artifacts or {}).items():
                log_artifact_object(path, obj)
            import pandas as pd

            example = pd.DataFrame(example_input[:5], columns=feature_names)
            primary = label_models[primary_label]
            signature = infer_signature(example, primary.predict(example_input[:5]))
            # explicit requirements: skips MLflow's slow requirement inference in a subprocess
            mlflow.lightgbm.log_model(primary, name="model", signature=signature,
                                      pip_requirements=[f"lightgbm=={lgb.__version__}"])
            run_id = run.info.run_id
        try:
            self.client.get_registered_model(name)
        except MlflowException:
            self.client.create_registered_model(name, description=f"Looper models of use case {use_case}")
        mv = self.client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id, tags=tags)
        self.client.set_registered_model_alias(name, CHALLENGER, mv.version)
        return self.get(use_case, str(mv.version))

    # -- versions and aliases ---------------------------------------------------------------
    def get(self, use_case: str, version: str) -> RegisteredVersion:
        mv = self.client.get_model_version(registered_model_name(use_case), version)
        run = self.client.get_run(mv.run_id)
        return RegisteredVersion(
            use_case=use_case,
            version=str(mv.version),
            run_id=mv.run_id,
            tags=dict(mv.tags),
            metrics=dict(run.data.metrics),
            aliases=list(mv.aliases),
        )

    def by_alias(self, use_case: str, alias: str) -> RegisteredVersion | None:
        try:
            mv = self.client.get_model_version_by_alias(registered_model_name(use_case), alias)
        except MlflowException:
            return None
        return self.get(use_case, str(mv.version))

    def set_alias(self, use_case: str, alias: str, version: str) -> None:
        self.client.set_registered_model_alias(registered_model_name(use_case), alias, version)

    def set_version_tags(self, use_case: str, version: str, tags: dict[str, str]) -> None:
        for k, v in tags.items():
            self.client.set_model_version_tag(registered_model_name(use_case), version, k, v)

    def load_label_models(self, version: RegisteredVersion) -> dict[str, lgb.Booster]:
        with self._fluent():
            local = Path(mlflow.artifacts.download_artifacts(
                run_id=version.run_id, artifact_path=LABEL_MODELS, tracking_uri=self.tracking_uri))
        return {p.stem: lgb.Booster(model_file=str(p)) for p in sorted(local.glob("*.txt"))}

    def log_table(self, run_id: str, path: str, frame: Any) -> None:
        """Log a Polars frame as a Parquet artifact ``path`` of the run."""
        with tempfile.TemporaryDirectory() as tmp:
            local = Path(tmp) / Path(path).name
            frame.write_parquet(local)
            with self._fluent():
                self.client.log_artifact(run_id, str(local), str(Path(path).parent) if "/" in path else None)

    def load_table(self, version: RegisteredVersion, path: str) -> Any:
        """A Parquet artifact of the version's run as a Polars frame (None when absent)."""
        import polars as pl

        try:
            with self._fluent():
                local = mlflow.artifacts.download_artifacts(run_id=version.run_id, artifact_path=path,
                                                            tracking_uri=self.tracking_uri)
        except (MlflowException, OSError):
            return None
        return pl.read_parquet(local)

    def log_to_run(self, run_id: str, metrics: dict[str, float], artifacts: dict[str, Any]) -> None:
        with self._fluent(), mlflow.start_run(run_id=run_id):
            mlflow.log_metrics({k: float(v) for k, v in metrics.items() if np.isfinite(v)})
            for path, obj in artifacts.items():
                log_artifact_object(path, obj)


def log_artifact_object(path: str, obj: Any) -> None:
    """Log a dict (JSON), text, or a matplotlib figure (PNG) under ``path`` in the active run."""
    if isinstance(obj, dict | list):
        mlflow.log_dict(obj if isinstance(obj, dict) else {"items": obj}, path)
    elif isinstance(obj, str):
        mlflow.log_text(obj, path)
    else:
        mlflow.log_figure(obj, path)
