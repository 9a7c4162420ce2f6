"""Daily partitions of log-derived assets."""

from __future__ import annotations

import os

from dagster import DailyPartitionsDefinition

PARTITIONS_START = os.environ.get("LOOPER_PARTITIONS_START", "2019-11-01")

daily_partitions = DailyPartitionsDefinition(start_date=PARTITIONS_START, end_offset=1)

# Which job an asset belongs to, as a tag the Dagster CLI can select on:
# ``--select 'group:<use_case> and tag:looper/stage=data'`` (daily partitions) or ``=model``.
STAGE_TAG = "looper/stage"
DATA_STAGE = {STAGE_TAG: "data"}
MODEL_STAGE = {STAGE_TAG: "model"}
