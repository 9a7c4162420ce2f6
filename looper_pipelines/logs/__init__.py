"""Durable append-only decision and observation logs.

``LogStore`` appends records to segment files (one writer per process; ``sync()`` fsyncs
now, ``seal()`` seals the active segments, ``close()`` does both); ``read_decisions`` and
``read_observations`` return every durable record as Polars frames; ``compact`` turns
sealed segments into Hive-partitioned Parquet; ``recover`` seals the segments of writers
that died, dropping a torn last line. The layout on disk is described in ``segments``.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

from looper_pipelines.logs.records import DECISIONS, KINDS, OBSERVATIONS
from looper_pipelines.logs.segments import recover
from looper_pipelines.logs.writer import LogStore

if TYPE_CHECKING:
    from looper_pipelines.logs.compaction import compact
    from looper_pipelines.logs.readers import read_decisions, read_log, read_observations
    from looper_pipelines.logs.schemas import DECISION_SCHEMA, OBSERVATION_SCHEMA, SCHEMAS

# The readers, compaction and schemas need Polars; the decision path (LogStore) does not,
# so they are imported on first use and importing the SDK stays light.
_LAZY = {
    "DECISION_SCHEMA": "looper_pipelines.logs.schemas",
    "OBSERVATION_SCHEMA": "looper_pipelines.logs.schemas",
    "SCHEMAS": "looper_pipelines.logs.schemas",
    "compact": "looper_pipelines.logs.compaction",
    "read_decisions": "looper_pipelines.logs.readers",
    "read_log": "looper_pipelines.logs.readers",
    "read_observations": "looper_pipelines.logs.readers",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DECISIONS",
    "DECISION_SCHEMA",
    "KINDS",
    "OBSERVATIONS",
    "OBSERVATION_SCHEMA",
    "SCHEMAS",
    "LogStore",
    "compact",
    "read_decisions",
    "read_log",
    "read_observations",
    "recover",
]
