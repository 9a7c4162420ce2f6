"""The data-quality checks Looper runs on a use case's logs.

Blocking checks (training must not use data that fails them): schema, nulls, ranges,
duplicate decision ids, observations timestamped before their decision (leakage), share of
orphan observations. Informational: volume against recent days, label delay.
"""

from __future__ import annotations

import glob
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.logs.schemas import DECISION_SCHEMA
from looper_pipelines.quality.gx_runner import run_expectations

MAX_ORPHAN_SHARE = 0.2
MAX_LATE_SHARE = 0.5
VOLUME_RANGE = (0.2, 5.0)


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    blocking: bool
    description: str
    details: dict[str, Any] = field(default_factory=dict)


class LogQuality:
    def __init__(self, logs_root: str, bp: Blueprint) -> None:
        self.bp = bp
        uc = bp.name
        self.decisions_glob = f"{logs_root}/decisions/use_case={uc}/date=*/*.parquet"
        self.observations_glob = f"{logs_root}/observations/use_case={uc}/date=*/*.parquet"

    def _decisions(self) -> pd.DataFrame:
        if not glob.glob(self.decisions_glob):
            return pd.DataFrame({c: [] for c in DECISION_SCHEMA})
        return duckdb.sql(f"select * exclude (date) from read_parquet('{self.decisions_glob}', hive_partitioning=true)").df()

    def decision_checks(self) -> list[CheckOutcome]:
        import great_expectations as gx

        E = gx.expectations
        df = self._decisions()
        k = len(self.bp.decision.actions)
        out = []
        res = run_expectations(df, [E.ExpectTableColumnsToMatchSet(column_set=list(DECISION_SCHEMA), exact_match=False)])
        out.append(CheckOutcome("decisions_schema", res[0][1], True, "decision log has every column of the record schema", res[0][2]))
        required = ["decision_id", "timestamp", "action", "action_index", "propensity", "features", "blueprint_version"]
        res = run_expectations(df, [E.ExpectColumnValuesToNotBeNull(column=c) for c in required if c in df.columns])
        out.append(CheckOutcome("decisions_not_null", all(r[1] for r in res), True, f"no nulls in {required}",
                                {c: r[2].get("unexpected_count", 0) for c, r in zip(required, res, strict=False)}))
        res = run_expectations(df, [
            E.ExpectColumnValuesToBeBetween(column="propensity", min_value=0, max_value=1, strict_min=True),
            E.ExpectColumnValuesToBeBetween(column="action_index", min_value=0, max_value=k - 1),
            E.ExpectColumnValuesToBeInSet(column="action", value_set=list(self.bp.decision.actions)),
        ])
        out.append(CheckOutcome("decisions_ranges", all(r[1] for r in res), True,
                                "propensity in (0, 1], action among the blueprint's actions",
                                {r[0]: r[2].get("unexpected_count", 0) for r in res}))
        res = run_expectations(df, [E.ExpectColumnValuesToBeUnique(column="decision_id")])
        out.append(CheckOutcome("decisions_unique_ids", res[0][1], True, "decision ids are unique",
                                {"duplicates": res[0][2].get("unexpected_count", 0)}))
        out.append(self._volume(df))
        return out

    def _volume(self, df: pd.DataFrame) -> CheckOutcome:
        if df.empty:
            return CheckOutcome("decisions_volume", False, False, "no decisions", {})
        days = pd.to_datetime(df["timestamp"]).dt.date.value_counts().sort_index()
        latest = int(days.iloc[-1])
        if len(days) < 2:
            return CheckOutcome("decisions_volume", True, False, "one day only: no history to compare", {"latest": latest})
        ref = float(days.iloc[:-1].tail(7).median())
        lo, hi = VOLUME_RANGE[0] * ref, VOLUME_RANGE[1] * ref
        frame = pd.DataFrame({"latest": [latest]})
        import great_expectations as gx

        res = run_expectations(frame, [gx.expectations.ExpectColumnValuesToBeBetween(column="latest", min_value=lo, max_value=hi)])
        return CheckOutcome("decisions_volume", res[0][1], False,
                            f"newest day's volume within {VOLUME_RANGE[0]}x to {VOLUME_RANGE[1]}x of the recent median",
                            {"latest": latest, "recent_median": ref})

    def observation_checks(self) -> list[CheckOutcome]:
        import great_expectations as gx

        E = gx.expectations
        if not glob.glob(self.observations_glob):
            return [CheckOutcome(n, True, b, "no observations yet", {}) for n, b in
                    (("observations_not_before_decision", True), ("observations_orphan_share", True), ("label_delay", False))]
        have_decisions = bool(glob.glob(self.decisions_glob))
        dec = f"read_parquet('{self.decisions_glob}', hive_partitioning=true)" if have_decisions else \
            "(select null::varchar decision_id, null::timestamptz timestamp where false)"
        windows = " ".join(f"when '{lb.name}' then {lb.window_hours * 3600.0}" for lb in self.bp.labels)
        joined = duckdb.sql(f"""
            select o.observation_id, o.name,
                   d.decision_id is null as orphan,
                   (epoch_us(o.timestamp) - epoch_us(d.timestamp)) / 1e6 as delay_s,
                   case o.name {windows} else null end as window_s
            from read_parquet('{self.observations_glob}', hive_partitioning=true) o
            left join (select decision_id, min(timestamp) as timestamp from {dec} group by 1) d using (decision_id)
        """).df()
        matched = joined[~joined["orphan"]]
        out = []
        res = run_expectations(matched, [E.ExpectColumnValuesToBeBetween(column="delay_s", min_value=0)])
        out.append(CheckOutcome("observations_not_before_decision", res[0][1], True,
                                "no observation is timestamped before its decision (leakage)",
                                {"violations": res[0][2].get("unexpected_count", 0)}))
        res = run_expectations(joined.assign(orphan=joined["orphan"].astype(float)),
                               [E.ExpectColumnMeanToBeBetween(column="orphan", min_value=0, max_value=MAX_ORPHAN_SHARE)])
        out.append(CheckOutcome("observations_orphan_share", res[0][1], True,
                                f"at most {MAX_ORPHAN_SHARE:.0%} of observations name an unknown decision",
                                {"orphan_share": res[0][2].get("observed_value")}))
        late = (matched["delay_s"] > matched["window_s"]).astype(float) if len(matched) else pd.Series([0.0])
        res = run_expectations(pd.DataFrame({"late": late}),
                               [E.ExpectColumnMeanToBeBetween(column="late", min_value=0, max_value=MAX_LATE_SHARE)])
        out.append(CheckOutcome("label_delay", res[0][1], False,
                                f"at most {MAX_LATE_SHARE:.0%} of observations arrive after their label window",
                                {"late_share": res[0][2].get("observed_value"),
                                 "median_delay_s": float(matched["delay_s"].median()) if len(matched) else None}))
        return out
