"""Data-quality validations of logs with Great Expectations (no Dagster here)."""

from looper_pipelines.quality.log_checks import CheckOutcome, LogQuality

__all__ = ["CheckOutcome", "LogQuality"]
