"""Daily partitions of log-derived assets."""

from __future__ import annotations

import os

from dagster import DailyPartitionsDefinition

PARTITIONS_START = os.environ.get("LOOPER_PARTITIONS_START", "2019-11-01")

daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1)
