"""Strategy blueprints: one typed, versioned YAML file per use case."""

from looper_pipelines.blueprints.loader import (
    BlueprintError,
    Catalog,
    blueprint_dirs,
    load_blueprint,
    load_catalog,
    parse_blueprint,
    scan_catalog,
)
from looper_pipelines.blueprints.model import Blueprint, Feature, Label, linear_weights

__all__ = [
    "Blueprint",
    "BlueprintError",
    "Catalog",
    "Feature",
    "Label",
    "blueprint_dirs",
    "linear_weights",
    "load_blueprint",
    "load_catalog",
    "parse_blueprint",
    "scan_catalog",
]
