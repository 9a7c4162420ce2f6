"""The encoding of a feature value as a model input, in one place.

A number is itself, a boolean 0/1, a category its index in the blueprint's list (LightGBM
categorical). A missing value (absent, or null) takes the declared default's encoding; with
no default (a required feature) or ``default: null`` it is NaN, which LightGBM treats as
missing. The SDK encodes one request with these rules; training encodes the logged records
with the same rules in bulk (``encode_logged``), so a record logged without a defaulted
feature (as a record of an older blueprint lineage is) trains as it would have served.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from looper_pipelines.blueprints.model import Blueprint, Feature

if TYPE_CHECKING:  # polars is imported where logged records are decoded, not on the request path
    import polars as pl

NAN = float("nan")


def category_codes(f: Feature) -> dict[str, float]:
    return {c: float(i) for i, c in enumerate(f.categories or [])}


def encode_value(f: Feature, v: Any) -> float:
    """The model input of a valid, normalised value of ``f`` (None: NaN)."""
    if v is None:
        return NAN
    if f.type == "category":
        return category_codes(f)[v]
    return float(v)


def missing_encoding(f: Feature) -> float:
    """The model input of ``f`` when a record does not carry it."""
    return NAN if f.required else encode_value(f, f.default)


def encode_logged(bp: Blueprint, features_json: pl.Series) -> np.ndarray:
    """The (n, F) model inputs of logged feature JSON objects, in blueprint order."""
    import polars as pl

    if not bp.features:
        return np.empty((len(features_json), 0))
    dtype = pl.Struct({f.name: (pl.Utf8 if f.type == "category" else pl.Float64) for f in bp.features})
    decoded = features_json.str.json_decode(dtype).struct.unnest()
    cols = []
    for f in bp.features:
        s = decoded[f.name]
        if f.type == "category":
            s = s.replace_strict(category_codes(f), default=None, return_dtype=pl.Float64)
        cols.append(s.cast(pl.Float64).fill_null(missing_encoding(f)).fill_nan(missing_encoding(f)).to_numpy())
    return np.column_stack(cols)
