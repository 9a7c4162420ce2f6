"""Run Great Expectations expectations on a pandas frame (ephemeral context, cached)."""

from __future__ import annotations

import functools
import itertools
import os
from typing import Any

import pandas as pd

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
_counter = itertools.count()


@functools.lru_cache(maxsize=1)
def _context() -> Any:
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig

    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False, metric_calculations=False)
    return ctx


def run_expectations(frame: pd.DataFrame, expectations: list[Any]) -> list[tuple[str, bool, dict[str, Any]]]:
    """(expectation type, success, result details) for each expectation."""
    import great_expectations as gx

    ctx = _context()
    name = f"frame_{next(_counter)}"
    source = ctx.data_sources.add_pandas(name)
    asset = source.add_dataframe_asset(name)
    batch = asset.add_batch_definition_whole_dataframe(name).get_batch(batch_parameters={"dataframe": frame})
    out = []
    for exp in expectations:
        res = batch.validate(exp)
        details = {k: v for k, v in (res.result or {}).items() if k in ("observed_value", "unexpected_count", "unexpected_percent", "element_count", "partial_unexpected_list")}
        out.append((type(exp).__name__, bool(res.success), details))
    ctx.data_sources.delete(name)
    _ = gx
    return out
