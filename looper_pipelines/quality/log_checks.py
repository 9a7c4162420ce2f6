"""The data-quality checks Looper runs on a use case's logs, over the days a run covers.

Blocking checks (training must not use data that fails them): schema, nulls, ranges,
duplicate decision ids, each feature against its declaration in the blueprint (required
features present, type, range, category), a day's volume dropping below the blueprint's
bound, observations timestamped before their decision (leakage), share of orphan
observations. Informational: label delay.
"""

from __future__ import annotations

import datetime as dt
import glob
from dataclasses import dataclass, field
from typing import Any

import duckdb
import pandas as pd

from looper_pipelines.blueprints.model import Blueprint, Feature
from looper_pipelines.logs.schemas import DECISION_SCHEMA
from looper_pipelines.quality.gx_runner import run_expectations

MAX_ORPHAN_SHARE = 0.2
MAX_LATE_SHARE = 0.5

# JSON types DuckDB reports for a logged feature value that a feature of each type accepts
# (an integral DOUBLE is also an int: see _feature_columns)
_JSON_TYPES = {"float": ("DOUBLE", "BIGINT", "UBIGINT"), "int": ("BIGINT", "UBIGINT"), "bool": ("BOOLEAN",),
               "category": ("VARCHAR",)}


@dataclass
class CheckOutcome:
    name: str
    passed: bool
    blocking: bool
    description: str
    details: dict[str, Any] = field(default_factory=dict)


def feature_check_name(feature: str) -> str:
    return f"feature_{feature}"


DESCRIPTIONS = {
    "decisions_schema": "The decision log has every column of the record schema.",
    "decisions_not_null": "No decision lacks its id, time, action, propensity, features or blueprint version.",
    "decisions_ranges": "Propensities in (0, 1]; actions and action indexes among the blueprint's actions.",
    "decisions_unique_ids": "No decision id appears twice.",
    "decisions_volume": "No day's decisions drop below the blueprint's bound (data_checks.max_volume_drop) "
                        "against the days before it.",
    "observations_not_before_decision": "No observation is timestamped before its decision (leakage).",
    "observations_orphan_share": "Few observations name a decision that was never logged.",
    "label_delay": "Most observations arrive inside their label's window (informational).",
}

CheckSpec = tuple[str, bool, str]  # name, blocking, description


def check_specs(bp: Blueprint) -> tuple[list[CheckSpec], list[CheckSpec]]:
    """The checks on decisions and on observations of ``bp``: (name, blocking, description)."""
    decisions = [(n, True, DESCRIPTIONS[n]) for n in
                 ("decisions_schema", "decisions_not_null", "decisions_ranges", "decisions_unique_ids", "decisions_volume")]
    decisions += [(feature_check_name(f.name), True, _feature_description(f, bp.data_checks.max_null_share))
                  for f in bp.features]
    observations = [(n, b, DESCRIPTIONS[n]) for n, b in
                    (("observations_not_before_decision", True), ("observations_orphan_share", True), ("label_delay", False))]
    return decisions, observations


def _sql_str(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _json_path(name: str) -> str:
    return _sql_str('$."' + name.replace('"', '\\"') + '"')


class LogQuality:
    """The checks over the decisions (and observations) logged on ``days`` (first and last
    day, inclusive; ``None``: every day). Observations are checked against decisions of any
    day, so an observation of yesterday's decision is not an orphan today."""

    def __init__(self, logs_root: str, bp: Blueprint, days: tuple[str, str] | None = None) -> None:
        self.bp = bp
        uc = bp.name
        self.days = days
        self.decisions_glob = f"{logs_root}/decisions/use_case={uc}/date=*/*.parquet"
        self.observations_glob = f"{logs_root}/observations/use_case={uc}/date=*/*.parquet"

    def _where_days(self) -> str:
        if self.days is None:
            return ""
        first, last = (dt.date.fromisoformat(d).isoformat() for d in self.days)
        return f" where cast(date as date) between date '{first}' and date '{last}'"

    def _decisions(self) -> pd.DataFrame:
        if not glob.glob(self.decisions_glob):
            return pd.DataFrame({c: [] for c in DECISION_SCHEMA})
        return duckdb.sql(f"select * exclude (date) from read_parquet('{self.decisions_glob}', "
                          f"hive_partitioning=true){self._where_days()}").df()

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
        out.append(self._volume())
        out.extend(self._feature_checks(df))
        return out

    # -- features ---------------------------------------------------------------------------
    def _feature_checks(self, df: pd.DataFrame) -> list[CheckOutcome]:
        """One check per feature of the blueprint: present where required (up to
        ``data_checks.max_null_share`` of the decisions), of its type, in its range, one of its
        categories."""
        import great_expectations as gx

        E = gx.expectations
        frame = _feature_columns(self.bp.features, df["features"] if "features" in df.columns else pd.Series([], dtype=object))
        max_null = self.bp.data_checks.max_null_share
        out = []
        for f in self.bp.features:
            value, kind = f.name, f"{f.name}__type"
            exps: list[tuple[str, Any]] = [("type", E.ExpectColumnValuesToBeInSet(column=kind, value_set=[f.type]))]
            if f.required:
                exps.append(("missing", E.ExpectColumnValuesToNotBeNull(column=value, mostly=1.0 - max_null)))
            if f.type == "category":
                exps.append(("category", E.ExpectColumnValuesToBeInSet(column=value, value_set=list(f.categories or []))))
            elif f.type != "bool" and (f.minimum is not None or f.maximum is not None):
                exps.append(("range", E.ExpectColumnValuesToBeBetween(column=f"{f.name}__number", min_value=f.minimum,
                                                                      max_value=f.maximum)))
            res = run_expectations(frame, [e for _, e in exps])
            details: dict[str, Any] = {}
            failed = []
            for (what, _), (_, ok, d) in zip(exps, res, strict=True):
                details[what] = d.get("unexpected_count", 0)
                if what == "missing":
                    details["missing_share"] = round(float(d.get("unexpected_percent") or 0.0) / 100.0, 6)
                if not ok:
                    failed.append(what)
                    sample = list(dict.fromkeys(str(v)[:40] for v in d.get("partial_unexpected_list") or []
                                                if v is not None))[:3]
                    if sample:
                        details[f"{what}_examples"] = sample
            desc = _feature_description(f, max_null)
            if failed:
                desc += f" (violated: {', '.join(failed)})"
            out.append(CheckOutcome(feature_check_name(f.name), not failed, True, desc, details))
        return out

    # -- volume -----------------------------------------------------------------------------
    def _volume(self) -> CheckOutcome:
        """Each checked day against the median of the ``volume_history_days`` days before it
        (days with no decision count as zero, from the first logged day on)."""
        bounds = self.bp.data_checks
        name, floor = "decisions_volume", 1.0 - bounds.max_volume_drop
        desc = (f"each day has at least {floor:.0%} of the median daily decisions of the "
                f"{bounds.volume_history_days} days before it")
        if not glob.glob(self.decisions_glob):
            return CheckOutcome(name, False, True, "no decisions", {})
        rows = duckdb.sql(f"select cast(date as date) d, count(*) n from read_parquet('{self.decisions_glob}', "
                          "hive_partitioning=true) group by 1 order by 1").fetchall()
        counts = {d: int(n) for d, n in rows}
        first_logged, last_logged = min(counts), max(counts)
        lo, hi = ((dt.date.fromisoformat(d) for d in self.days) if self.days else (first_logged, last_logged))
        low_days: dict[str, Any] = {}
        checked = 0
        day = max(lo, first_logged)
        while day <= min(hi, last_logged):
            history = [counts.get(day - dt.timedelta(days=i), 0) for i in range(1, bounds.volume_history_days + 1)
                       if day - dt.timedelta(days=i) >= first_logged]
            if history:
                ref = float(pd.Series(history).median())
                checked += 1
                if ref > 0 and counts.get(day, 0) < floor * ref:
                    low_days[day.isoformat()] = {"decisions": counts.get(day, 0), "recent_median": ref}
            day += dt.timedelta(days=1)
        if checked == 0:
            return CheckOutcome(name, True, True, desc + ": no earlier day to compare with", {"days_compared": 0})
        import great_expectations as gx

        frame = pd.DataFrame({"low_days": [len(low_days)]})
        res = run_expectations(frame, [gx.expectations.ExpectColumnValuesToBeBetween(column="low_days", max_value=0)])
        return CheckOutcome(name, res[0][1], True, desc, {"days_compared": checked, "low_days": low_days})

    # -- observations -----------------------------------------------------------------------
    def observation_checks(self) -> list[CheckOutcome]:
        import great_expectations as gx

        E = gx.expectations
        if not glob.glob(self.observations_glob):
            return [CheckOutcome(n, True, b, "no observations yet", {}) for n, b, _ in check_specs(self.bp)[1]]
        have_decisions = bool(glob.glob(self.decisions_glob))
        dec = f"read_parquet('{self.decisions_glob}', hive_partitioning=true)" if have_decisions else \
            "(select null::varchar decision_id, null::timestamptz timestamp where false)"
        windows = " ".join(f"when {_sql_str(lb.name)} then {lb.window_hours * 3600.0}" for lb in self.bp.labels)
        joined = duckdb.sql(f"""
            select o.observation_id, o.name,
                   d.decision_id is null as orphan,
                   (epoch_us(o.timestamp) - epoch_us(d.timestamp)) / 1e6 as delay_s,
                   case o.name {windows} else null end as window_s
            from (select * from read_parquet('{self.observations_glob}', hive_partitioning=true){self._where_days()}) o
            left join (select decision_id, min(timestamp) as timestamp from {dec} group by 1) d using (decision_id)
        """).df()
        if joined.empty:
            return [CheckOutcome(n, True, b, "no observations on these days", {}) for n, b, _ in check_specs(self.bp)[1]]
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


def _feature_description(f: Feature, max_null: float) -> str:
    """What the blueprint declares of ``f``, as its check tests it."""
    parts = [f"{f.name}: {f.type}"]
    if f.required:
        parts.append("present" if max_null == 0 else f"missing in at most {max_null:.1%}")
    if f.categories:
        parts.append(f"one of {len(f.categories)} categories")
    if f.minimum is not None or f.maximum is not None:
        parts.append(f"in [{'' if f.minimum is None else f'{f.minimum:g}'}, "
                     f"{'' if f.maximum is None else f'{f.maximum:g}'}]")
    return ", ".join(parts)


def _feature_columns(features: list[Feature], logged: pd.Series) -> pd.DataFrame:
    """Per feature of the logged JSON: the value (text, or null when missing or JSON null),
    its type as the blueprint names types (or the JSON type it has instead), and its number."""
    cols = []
    for i, f in enumerate(features):
        t, v = f"t{i}", f"v{i}"
        accepted = ", ".join(_sql_str(x) for x in _JSON_TYPES[f.type])
        integral = (f" or ({t} = 'DOUBLE' and try_cast({v} as double) = floor(try_cast({v} as double)))"
                    if f.type == "int" else "")
        number = f"try_cast({v} as double)" if f.type in ("float", "int") else "null::double"
        value = f"{v}" if f.type == "category" else f"case when {t} = 'NULL' then null else {v} end"
        cols.append(f"""
            case when {t} is null or {t} = 'NULL' then null
                 when {t} in ({accepted}){integral} then {_sql_str(f.type)} else lower({t}) end as "{f.name}__type",
            {value} as "{f.name}",
            case when {t} in ({accepted}){integral} then {number} end as "{f.name}__number"
        """)
    lets = ", ".join(f"json_type(features, {_json_path(f.name)}) as t{i}, "
                     f"json_extract_string(features, {_json_path(f.name)}) as v{i}"
                     for i, f in enumerate(features))
    con = duckdb.connect()
    try:
        con.register("logged", pd.DataFrame({"features": logged.astype(object)}))
        return con.sql(f"select {', '.join(cols)} from (select {lets} from logged)").df()
    finally:
        con.close()
