"""Convert library results into values Dagster metadata accepts."""

from typing import Any

import numpy as np
from dagster import MetadataValue


def plain(v: Any) -> Any:
    """numpy scalars to Python; containers to JSON metadata; anything else to text."""
    if isinstance(v, np.generic):
        v = v.item()
    if v is None or isinstance(v, bool | int | float | str):
        return v
    if isinstance(v, dict | list | tuple):
        return MetadataValue.json(_jsonable(v))
    return str(v)


def _jsonable(v: Any) -> Any:
    if isinstance(v, np.generic):
        return v.item()
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [_jsonable(x) for x in v]
    if isinstance(v, float | int | str | bool) or v is None:
        return v
    return str(v)


def plain_dict(d: dict[str, Any]) -> dict[str, Any]:
    return {k: plain(v) for k, v in d.items()}
