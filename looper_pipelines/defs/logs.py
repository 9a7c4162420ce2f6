"""Log assets: compacted Parquet decision and observation logs, the graph's inputs."""


from typing import Any

import duckdb
from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetSpec,
    BackfillPolicy,
    MaterializeResult,
    multi_asset,
)

from looper_pipelines.defs.partitions import DATA_STAGE, daily_partitions
from looper_pipelines.defs.resources import LooperHome


def log_glob(home: LooperHome, kind: str, use_case: str) -> str:
    return str(home.layout.logs / kind / f"use_case={use_case}" / "date=*" / "*.parquet")


def count_by_day(home: LooperHome, kind: str, use_case: str, start: str, end: str) -> dict[str, int]:
    import glob

    pattern = log_glob(home, kind, use_case)
    if not glob.glob(pattern):
        return {}
    rows = duckdb.sql(
        f"select cast(date as varchar) d, count(*) n from read_parquet('{pattern}', hive_partitioning=true) "
        f"where cast(date as date) >= date '{start}' and cast(date as date) < date '{end}' group by 1 order by 1"
    ).fetchall()
    return {d: int(n) for d, n in rows}


def build_log_assets(use_case: str) -> Any:
    @multi_asset(
        name=f"{use_case}_logs",
        specs=[
            AssetSpec(AssetKey([use_case, "decision_logs"]), group_name=use_case, kinds={"parquet"}, tags=DATA_STAGE,
                      description="Decision records, compacted to Parquet by day."),
            AssetSpec(AssetKey([use_case, "observation_logs"]), group_name=use_case, kinds={"parquet"}, tags=DATA_STAGE,
                      description="Observation records, compacted to Parquet by day."),
        ],
        partitions_def=daily_partitions,
        backfill_policy=BackfillPolicy.single_run(),
    )
    def _logs(context: AssetExecutionContext, looper_home: LooperHome):  # type: ignore[no-untyped-def]
        from looper_pipelines.logs import compact, recover

        recovered = recover(looper_home.layout.root)
        report = compact(looper_home.layout.root, use_case)
        window = context.partition_time_window
        start, end = window.start.strftime("%Y-%m-%d"), window.end.strftime("%Y-%m-%d")
        decisions = count_by_day(looper_home, "decisions", use_case, start, end)
        if not decisions:
            raise ValueError(f"no decisions logged for use case {use_case!r} in [{start}, {end})")
        observations = count_by_day(looper_home, "observations", use_case, start, end)
        yield MaterializeResult(
            asset_key=AssetKey([use_case, "decision_logs"]),
            metadata={"rows": sum(decisions.values()), "rows_by_day": decisions,
                      "compaction": {k: v for k, v in report.items() if isinstance(v, int | float | str)},
                      "recovered": {k: v for k, v in recovered.items() if isinstance(v, int | float | str)}},
        )
        yield MaterializeResult(
            asset_key=AssetKey([use_case, "observation_logs"]),
            metadata={"rows": sum(observations.values()), "rows_by_day": observations},
        )

    return _logs
