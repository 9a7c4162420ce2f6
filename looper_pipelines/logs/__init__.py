"""Durable append-only decision and observation logs.

``LogStore`` appends records to segment files (one writer per process; ``sync()`` fsyncs
now, ``seal()`` seals the active segments, ``close()`` does both); ``read_decisions`` and
``read_observations`` return every durable record as Polars frames; ``compact`` turns
sealed segments into Hive-partitioned Parquet; ``recover`` seals the segments of writers
that died, dropping a torn last line. The layout on disk is described in ``segments``.
"""

from looper_pipelines.logs.compaction import compact
from looper_pipelines.logs.readers import read_decisions, read_log, read_observations
from looper_pipelines.logs.records import (
    DECISION_SCHEMA,
    DECISIONS,
    KINDS,
    OBSERVATION_SCHEMA,
    OBSERVATIONS,
    SCHEMAS,
)
from looper_pipelines.logs.segments import recover
from looper_pipelines.logs.writer import LogStore

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
