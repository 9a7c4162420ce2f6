"""Validate a product's feature dict against the blueprint and encode it for the model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from looper_pipelines.blueprints.model import Blueprint, Feature
from looper_pipelines.client.errors import LooperInputError

_MISSING = object()
NAN = float("nan")
MAX_SAFE_INT = 2**53  # integers beyond this lose precision as JSON numbers


class FeatureEncoder:
    """Turns ``{name: value}`` into the model's input row (floats in blueprint order).

    Missing features take the declared default (``default: null`` means missing → NaN) or
    are an error when required; unknown names and wrong types are errors naming the feature.
    Categories are encoded as their index in the blueprint's list (LightGBM categorical);
    booleans as 0/1. ``normalise`` returns the validated dict that is logged.
    """

    def __init__(self, bp: Blueprint) -> None:
        self.blueprint = bp
        self.features: list[Feature] = list(bp.features)
        self.names = [f.name for f in self.features]
        self._known = frozenset(self.names)
        self._codes = {
            f.name: {c: float(i) for i, c in enumerate(f.categories or [])} for f in self.features
        }

    def normalise(self, features: Mapping[str, Any]) -> dict[str, Any]:
        if not isinstance(features, Mapping):
            raise LooperInputError("features", f"expected an object of feature values, got {type(features).__name__}")
        for k in features:
            if k not in self._known:
                raise LooperInputError(
                    f"features.{k}", f"unknown feature for use case {self.blueprint.name!r}; expected one of {self.names}"
                )
        out: dict[str, Any] = {}
        for f in self.features:
            v = features.get(f.name, _MISSING)
            if v is _MISSING or v is None:
                if f.required:
                    raise LooperInputError(f"features.{f.name}", "is required (no default declared)")
                out[f.name] = f.default
                continue
            out[f.name] = _check_value(f, v)
        return out

    def encode(self, normalised: Mapping[str, Any]) -> list[float]:
        row: list[float] = []
        for f in self.features:
            v = normalised[f.name]
            if v is None:
                row.append(NAN)
            elif f.type == "category":
                row.append(self._codes[f.name][v])
            else:
                row.append(float(v))
        return row

    def encode_many(self, rows: list[Mapping[str, Any]]) -> list[list[float]]:
        return [self.encode(self.normalise(r)) for r in rows]


def _check_value(f: Feature, v: Any) -> Any:
    field = f"features.{f.name}"
    if f.type == "category":
        if not isinstance(v, str):
            raise LooperInputError(field, f"expected a category (string), got {type(v).__name__}")
        if v not in (f.categories or ()):
            raise LooperInputError(field, f"{v!r} is not one of {f.categories}")
        return v
    if f.type == "bool":
        if not isinstance(v, bool):
            raise LooperInputError(field, f"expected a boolean, got {type(v).__name__}")
        return v
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise LooperInputError(field, f"expected a number ({f.type}), got {type(v).__name__}")
    try:
        x = float(v)
    except OverflowError:
        raise LooperInputError(field, "is too large") from None
    if not math.isfinite(x):
        raise LooperInputError(field, f"must be finite, got {v!r}")
    if f.type == "int":
        if x != int(x):
            raise LooperInputError(field, f"expected an integer, got {v!r}")
        if abs(v if isinstance(v, int) else x) > MAX_SAFE_INT:
            raise LooperInputError(field, f"{v!r} is outside the integer range ±2**53")
        v = int(x)
    else:
        v = x
    if f.minimum is not None and x < f.minimum:
        raise LooperInputError(field, f"{v!r} is below the minimum {f.minimum:g}")
    if f.maximum is not None and x > f.maximum:
        raise LooperInputError(field, f"{v!r} is above the maximum {f.maximum:g}")
    return v
