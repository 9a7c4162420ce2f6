"""Column types of the decision and observation logs as Polars schemas (Parquet files and
the frames the readers return)."""

from __future__ import annotations

import polars as pl

from looper_pipelines.logs.records import DECISIONS, OBSERVATIONS

DECISION_SCHEMA: dict[str, pl.DataType] = {
    "decision_id": pl.Utf8(),
    "use_case": pl.Utf8(),
    "subject_id": pl.Utf8(),
    "timestamp": pl.Datetime("us", "UTC"),
    "features": pl.Utf8(),
    "action": pl.Utf8(),
    "action_index": pl.Int32(),
    "propensity": pl.Float64(),
    "scores": pl.Utf8(),
    "model_version": pl.Utf8(),
    "blueprint_version": pl.Utf8(),
    "policy_version": pl.Utf8(),
    "explored": pl.Boolean(),
    "experiment_arm": pl.Utf8(),
    "assignment_probability": pl.Float64(),
}

OBSERVATION_SCHEMA: dict[str, pl.DataType] = {
    "observation_id": pl.Utf8(),
    "decision_id": pl.Utf8(),
    "use_case": pl.Utf8(),
    "name": pl.Utf8(),
    "value": pl.Float64(),
    "timestamp": pl.Datetime("us", "UTC"),
}

SCHEMAS = {DECISIONS: DECISION_SCHEMA, OBSERVATIONS: OBSERVATION_SCHEMA}
