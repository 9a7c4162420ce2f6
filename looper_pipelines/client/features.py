"""Validate a product's feature dict against the blueprint and encode it for the model."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from looper_pipelines.blueprints.model import Blueprint, Feature
from looper_pipelines.client.errors import LooperInputError
from looper_pipelines.errors import shown, shown_key
from looper_pipelines.features import category_codes, encode_value, missing_encoding

try:  # the common case of normalise_encode in C (setup.py builds it with a C compiler)
    from looper_pipelines.client import _features
except ImportError:  # pragma: no cover - not built: the Python version serves
    _features = None  # type: ignore[assignment]

_KIND_CODES = {"float": 0, "int": 1, "category": 2, "bool": 3}

_MISSING = object()
_REQUIRED = object()
MAX_SAFE_INT = 2**53  # integers beyond this lose precision as JSON numbers
_MAX_FLOAT = 1.7976931348623157e308


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
        self._codes = {f.name: category_codes(f) for f in self.features}
        # per feature: what a value of the expected Python type must satisfy to be taken
        # as it is (anything else goes through the full check, which names the problem)
        # a missing feature: _REQUIRED, or its default; and its encoding (missing_encoding)
        self._plan = [
            (f.name, f.type, *_fast_bounds(f), self._codes[f.name],
             _REQUIRED if f.required else f.default, missing_encoding(f), f)
            for f in self.features
        ]  # fmt: skip
        if _features is not None:
            # values already of their feature's type and range in C; anything else (to
            # convert or to reject) goes to the Python version below
            self.normalise_encode = _features.Encoder(  # type: ignore[method-assign]
                [(name, _KIND_CODES[kind], float(lo), float(hi), codes or None,
                  default is _REQUIRED, None if default is _REQUIRED else default, default_x)
                 for name, kind, lo, hi, codes, default, default_x, _ in self._plan],
                self._normalise_encode,
            )  # fmt: skip

    def normalise(self, features: Mapping[str, Any]) -> dict[str, Any]:
        """The validated feature dict that is logged (defaults filled in)."""
        return self.normalise_encode(features)[0]

    def normalise_encode(self, features: Mapping[str, Any]) -> tuple[dict[str, Any], list[float]]:
        """The validated feature dict and the model's input row, in one pass."""
        return self._normalise_encode(features)

    def _normalise_encode(self, features: Mapping[str, Any]) -> tuple[dict[str, Any], list[float]]:
        if not isinstance(features, Mapping):
            raise LooperInputError("features", f"expected an object of feature values, got {type(features).__name__}")
        out: dict[str, Any] = {}
        row: list[float] = []
        get = features.get
        present = 0
        for name, kind, lo, hi, codes, default, default_x, f in self._plan:
            v = get(name, _MISSING)
            if v is _MISSING or v is None:
                if v is None:
                    present += 1
                if default is _REQUIRED:
                    self._unknown(features)  # an unknown name first: a misspelt one is the likely cause
                    raise LooperInputError(f"features.{name}", "is required (no default declared)")
                out[name] = default
                row.append(default_x)  # type: ignore[arg-type]
                continue
            present += 1
            t = type(v)
            if t is float and kind == "float" and lo <= v <= hi:  # excludes NaN and inf
                x = v
            elif t is int and kind == "int" and lo <= v <= hi:
                x = float(v)
            elif t is str and kind == "category" and v in codes:
                x = codes[v]
            elif t is bool and kind == "bool":
                x = float(v)
            else:
                try:
                    v = _check_value(f, v)
                except LooperInputError:
                    self._unknown(features)
                    raise
                x = self._encode_value(f, v)
            out[name] = v
            row.append(x)
        if present != len(features):
            self._unknown(features)
        return out, row

    def _unknown(self, features: Mapping[str, Any]) -> None:
        for k in features:
            if k not in self._known:
                raise LooperInputError(
                    f"features.{shown_key(k)}", f"unknown feature for use case {self.blueprint.name!r}; expected one of {self.names}"
                )

    def encode(self, normalised: Mapping[str, Any]) -> list[float]:
        """The model's input row of an already normalised feature dict."""
        return [self._encode_value(f, normalised[f.name]) for f in self.features]

    def _encode_value(self, f: Feature, v: Any) -> float:
        if v is not None and f.type == "category":  # category_codes(f), built once per encoder
            return self._codes[f.name][v]
        return encode_value(f, v)

    def encode_many(self, rows: list[Mapping[str, Any]]) -> list[list[float]]:
        return [self.normalise_encode(r)[1] for r in rows]


def _fast_bounds(f: Feature) -> tuple[float, float]:
    """The range in which a value of the feature's own type is accepted as it is."""
    lo = f.minimum if f.minimum is not None else -_MAX_FLOAT
    hi = f.maximum if f.maximum is not None else _MAX_FLOAT
    if f.type == "int":
        return max(lo, -MAX_SAFE_INT), min(hi, MAX_SAFE_INT)
    return lo, hi


def _check_value(f: Feature, v: Any) -> Any:
    field = f"features.{f.name}"
    if f.type == "category":
        if not isinstance(v, str):
            raise LooperInputError(field, f"expected a category (string), got {type(v).__name__}")
        if v not in (f.categories or ()):
            raise LooperInputError(field, f"{shown(v)} is not one of {f.categories}")
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
        raise LooperInputError(field, f"must be finite, got {shown(v)}")
    if f.type == "int":
        if x != int(x):
            raise LooperInputError(field, f"expected an integer, got {shown(v)}")
        if abs(v if isinstance(v, int) else x) > MAX_SAFE_INT:
            raise LooperInputError(field, f"{shown(v)} is outside the integer range ±2**53")
        v = int(x)
    else:
        v = x
    if f.minimum is not None and x < f.minimum:
        raise LooperInputError(field, f"{shown(v)} is below the minimum {f.minimum:g}")
    if f.maximum is not None and x > f.maximum:
        raise LooperInputError(field, f"{shown(v)} is above the maximum {f.maximum:g}")
    return v
