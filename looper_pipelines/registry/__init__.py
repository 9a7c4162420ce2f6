"""The model registry on MLflow: runs, registered versions per use case, aliases."""

from looper_pipelines.registry.mlflow_registry import (
    CHALLENGER,
    CHAMPION,
    ModelRegistry,
    RegisteredVersion,
    registered_model_name,
)

__all__ = ["CHALLENGER", "CHAMPION", "ModelRegistry", "RegisteredVersion", "registered_model_name"]
