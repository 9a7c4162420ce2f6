"""The dbt stage at size: is dbt's label join close to the same join written directly in DuckDB?

For each size N, simulated decisions of ``notification_send`` over 7 days and their
observations are written as Hive-partitioned Parquet with the log store's layout and
schemas (clicks mostly within 24 h and some later, unsubscribes within 72 h and a few
later, ~2% duplicated observation ids, a few observations before their decision, and
observations of decisions logged the day before the window). Then, in the same process:

* ``dbt run`` of the five models into a fresh warehouse (full refresh of the whole
  window, ``--vars`` from ``dbt_vars``), timed as the models' own execution time (sum of
  ``execution_time`` of the model nodes in run_results.json) and as the wall time of the
  dbt process; ``dbt test`` is timed separately;
* dbt's fixed start-up: wall time minus the models' time, and a ``dbt run`` whose
  selection is empty;
* the same five tables built directly in DuckDB SQL over one connection to a fresh file,
  with DuckDB's ``threads`` equal to what dbt's own DuckDB connection uses.

Both results are checked against each other and against a reference computed in Polars
from the generator's integer keys (row counts, label sums, observation counts). Each timing
is the minimum of ``--repeats`` runs. Goal: dbt models <= 1.5x the direct SQL at 1M and 5M,
and close to linear growth with N.

    python bench/pipeline.py                      # N = 100k, 1M, 5M
    python bench/pipeline.py --quick              # N = 100k
    python bench/pipeline.py --sizes 1000000 --repeats 3
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder is first on sys.path, where a benchmark named like a
# standard-library module would shadow it for every library imported below.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from datetime import date, timedelta  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import duckdb  # noqa: E402
import numpy as np  # noqa: E402
import polars as pl  # noqa: E402

from looper_pipelines.blueprints import Blueprint, load_blueprint  # noqa: E402
from looper_pipelines.logs.schemas import DECISION_SCHEMA, OBSERVATION_SCHEMA  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
DBT_DIR = ROOT / "dbt_project"
DBT = Path(sys.executable).with_name("dbt")
CATALOG = ROOT / "looper_pipelines" / "blueprints" / "catalog"
USE_CASE = "notification_send"
MODELS = ("stg_decisions", "stg_observations", "int_decision_labels",
          "fct_training_examples", "fct_experiment_outcomes")

START = date(2025, 3, 3)
DAYS = 7
HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US
EPOCH_DAY = (START - date(1970, 1, 1)).days
START_US = EPOCH_DAY * DAY_US
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


# -- simulated logs --------------------------------------------------------------------
def hex_ids(ms: np.ndarray, prefix: np.ndarray, counter: np.ndarray) -> pl.Series:
    """Time-ordered ids as the log store makes them: <ms:12 hex><process:8 hex><counter:8 hex>."""
    n = ms.size
    nib = np.empty((n, 28), dtype=np.uint8)
    ms = ms.astype(np.uint64)
    prefix = prefix.astype(np.uint64)
    counter = counter.astype(np.uint64)
    for i in range(12):
        nib[:, i] = (ms >> np.uint64(4 * (11 - i))) & np.uint64(15)
    for i in range(8):
        nib[:, 12 + i] = (prefix >> np.uint64(4 * (7 - i))) & np.uint64(15)
        nib[:, 20 + i] = (counter >> np.uint64(4 * (7 - i))) & np.uint64(15)
    chars = np.ascontiguousarray(_HEX[nib])
    return pl.Series(chars.view("S28").ravel()).cast(pl.Utf8)


def _txt(expr: pl.Expr) -> pl.Expr:
    return expr.cast(pl.Utf8).fill_null("null")


def _windows(variables: dict[str, Any]) -> dict[str, int]:
    return {lb["name"]: int(lb["window_hours"] * HOUR_US) for lb in variables["labels"]}


@dataclass
class SimLogs:
    decisions: int  # in the window
    decision_rows: int  # written, including the day before the window
    observation_rows: int  # written, including duplicates
    expected: dict[str, float]


def simulate(logs: Path, n: int, variables: dict[str, Any], bp: Blueprint, seed: int = 0) -> SimLogs:
    rng = np.random.default_rng(seed)
    windows = _windows(variables)
    w_click, w_unsub = windows["click"], windows["unsubscribe"]
    n_pre = max(10, n // 50)  # decisions of the day before the window (outside the run's dates)
    total = n + n_pre

    # decisions: in-window ones are 0..n-1, then those of the previous day
    ts = np.concatenate([
        START_US + np.sort(rng.integers(0, DAYS * DAY_US, n)),
        START_US - DAY_US + np.sort(rng.integers(0, DAY_US, n_pre)),
    ])
    procs = rng.integers(0, 2**32, 4, dtype=np.uint64)
    dec_ids = hex_ids(ts // 1000, procs[rng.integers(0, 4, total)], np.arange(total) + 7) + f"-{USE_CASE}"

    in_exp = rng.random(total) < (bp.experiment.share if bp.experiment else 0.1)
    treated = rng.random(total) < 0.5
    explored = ~in_exp & (rng.random(total) < 0.05)
    greedy_send = rng.random(total) < 0.7
    send = np.where(in_exp, treated, np.where(explored, rng.random(total) < 0.5, greedy_send))
    propensity = np.where(in_exp, 0.5, np.where(send == greedy_send, 0.975, 0.025))
    p_click = rng.uniform(0.05, 0.6, total).round(4)
    p_unsub = rng.uniform(0.0, 0.08, total).round(4)
    open_rate = rng.uniform(0, 1, total).round(3)
    hour = (ts // HOUR_US) % 24
    dec = pl.DataFrame({
        "decision_id": dec_ids,
        "subject_id": pl.Series(rng.integers(0, max(1000, n // 5), total)),
        "ts": ts,
        "_tenure": rng.exponential(300.0, total).round(1),
        "_sessions": rng.poisson(4, total),
        "_since": rng.exponential(3.0, total).round(2),
        "_open": np.where(rng.random(total) < 0.1, np.nan, open_rate),
        "_notifs": rng.poisson(6, total),
        "_platform": np.array(["ios", "android", "web"])[rng.integers(0, 3, total)],
        "_hour": hour,
        "_pc": p_click, "_pu": p_unsub,
        "send": send, "propensity": propensity, "explored": explored,
        "in_exp": in_exp, "treated": treated,
    }).with_columns(pl.col("_open").fill_nan(None))
    dec = dec.select(
        "decision_id",
        pl.lit(USE_CASE).alias("use_case"),
        ("user-" + pl.col("subject_id").cast(pl.Utf8)).alias("subject_id"),
        pl.from_epoch("ts", time_unit="us").dt.replace_time_zone("UTC").alias("timestamp"),
        pl.concat_str([
            pl.lit('{"tenure_days": '), _txt(pl.col("_tenure")),
            pl.lit(', "sessions_last_7d": '), _txt(pl.col("_sessions")),
            pl.lit(', "days_since_last_visit": '), _txt(pl.col("_since")),
            pl.lit(', "notif_open_rate": '), _txt(pl.col("_open")),
            pl.lit(', "notifs_last_7d": '), _txt(pl.col("_notifs")),
            pl.lit(', "platform": "'), pl.col("_platform"),
            pl.lit('", "hour_of_day": '), _txt(pl.col("_hour")), pl.lit("}"),
        ]).alias("features"),
        pl.when("send").then(pl.lit("send")).otherwise(pl.lit("dont_send")).alias("action"),
        pl.col("send").cast(pl.Int32).alias("action_index"),
        "propensity",
        pl.concat_str([
            pl.lit('{"click": [0.0, '), _txt(pl.col("_pc")),
            pl.lit('], "unsubscribe": [0.0, '), _txt(pl.col("_pu")), pl.lit("]}"),
        ]).alias("scores"),
        pl.lit("notification_send-7").alias("model_version"),
        pl.lit(bp.version).alias("blueprint_version"),
        pl.lit(bp.policy_version).alias("policy_version"),
        "explored",
        pl.when("in_exp").then(pl.when("treated").then(pl.lit("treatment")).otherwise(pl.lit("control")))
        .alias("experiment_arm"),
        pl.when("in_exp").then(pl.lit(0.5)).alias("assignment_probability"),
    ).select([pl.col(c).cast(t) for c, t in DECISION_SCHEMA.items()])

    # observations: (decision index, name 0 = click / 1 = unsubscribe, delay)
    ci = np.flatnonzero(rng.random(total) < 0.30)
    late = rng.random(ci.size) < 0.12
    c_delay = np.where(late, rng.uniform(w_click, 3 * w_click, ci.size),
                       rng.exponential(w_click / 8, ci.size))
    ui = np.flatnonzero(rng.random(total) < 0.033)
    late = rng.random(ui.size) < 0.1
    u_delay = np.where(late, rng.uniform(w_unsub, 5 * w_unsub / 3, ui.size), rng.uniform(0, w_unsub, ui.size))
    si = rng.choice(total, size=max(1, total // 500), replace=False)  # clock skew: before the decision
    s_delay = -rng.uniform(1e6, 600e6, si.size)
    d_idx = np.concatenate([ci, ui, si])
    name = np.concatenate([np.zeros(ci.size, np.int8), np.ones(ui.size, np.int8), np.zeros(si.size, np.int8)])
    o_ts = ts[d_idx] + np.concatenate([c_delay, u_delay, s_delay]).astype(np.int64)
    key = np.arange(d_idx.size)
    ids = hex_ids(o_ts // 1000, procs[rng.integers(0, 4, key.size)], key + 11)
    dup = rng.choice(d_idx.size, size=int(0.02 * d_idx.size), replace=False)  # retried writes
    d_idx = np.concatenate([d_idx, d_idx[dup]])
    name = np.concatenate([name, name[dup]])
    o_ts = np.concatenate([o_ts, o_ts[dup] + rng.integers(1000, 600_000_000, dup.size)])
    key = np.concatenate([key, key[dup]])
    names = np.array(["click", "unsubscribe"])
    obs = pl.DataFrame({
        "observation_id": ids.gather(key),
        "decision_id": dec_ids.gather(d_idx),
        "use_case": pl.Series([USE_CASE]).new_from_index(0, key.size),
        "name": names[name],
        "value": np.ones(key.size),
        "timestamp": pl.Series(o_ts).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
    }).select([pl.col(c).cast(t) for c, t in OBSERVATION_SCHEMA.items()])

    _write_partitions(logs / "decisions", dec, ts)
    _write_partitions(logs / "observations", obs, o_ts)
    expected = _reference(n, ts, dec, d_idx, name, o_ts, key, variables)
    return SimLogs(n, total, key.size, expected)


def _write_partitions(base: Path, df: pl.DataFrame, ts_us: np.ndarray) -> None:
    """One part file per UTC date, rows in time order, as compaction writes them."""
    day = ts_us // DAY_US
    order = np.argsort(ts_us, kind="stable")
    df, day = df[order], day[order]
    for d in np.unique(day):
        lo, hi = np.searchsorted(day, [d, d + 1])
        ds = (date(1970, 1, 1) + timedelta(days=int(d))).isoformat()
        dest = base / f"use_case={USE_CASE}" / f"date={ds}" / f"part-{ds.replace('-', '')}T000000000000Z-1-bench-000000.parquet"
        dest.parent.mkdir(parents=True, exist_ok=True)
        df.slice(int(lo), int(hi - lo)).write_parquet(dest, compression="zstd", statistics=True)


def _reference(n: int, ts: np.ndarray, dec: pl.DataFrame, d_idx: np.ndarray, name: np.ndarray,
               o_ts: np.ndarray, key: np.ndarray, variables: dict[str, Any]) -> dict[str, float]:
    """What the five models must produce, computed on the generator's integer keys."""
    windows = _windows(variables)
    max_days = math.ceil(max(lb["window_hours"] for lb in variables["labels"]) / 24) + 1
    lo, hi = START_US, START_US + (DAYS + max_days) * DAY_US
    o = pl.DataFrame({"key": key, "dec": d_idx, "name": name, "ts": o_ts})
    staged = (o.filter((pl.col("ts") >= lo) & (pl.col("ts") < hi))
              .sort("ts").unique("key", keep="first", maintain_order=True))
    win = pl.DataFrame({"name": np.array([0, 1], np.int8),
                        "w": [windows["click"], windows["unsubscribe"]]})
    arm = dec.get_column("experiment_arm").is_not_null().to_numpy()
    j = staged.filter(pl.col("dec") < n).join(win, on="name")
    j = j.with_columns(delay=pl.col("ts") - pl.Series(ts[j.get_column("dec").to_numpy()]))
    j = j.filter((pl.col("delay") >= 0) & (pl.col("delay") < pl.col("w")))
    per = j.group_by("dec", "name").agg(pl.len().alias("k"))
    exp_per = per.filter(pl.Series(arm[per.get_column("dec").to_numpy()]))
    return {
        "stg_decisions": n, "stg_observations": staged.height, "int_decision_labels": 2 * n,
        "fct_training_examples": n, "fct_experiment_outcomes": int(arm[:n].sum()),
        "click": per.filter(pl.col("name") == 0).height,
        "unsubscribe": per.filter(pl.col("name") == 1).height,
        "n_observations": j.height,
        "exp_click": exp_per.filter(pl.col("name") == 0).height,
        "exp_unsubscribe": exp_per.filter(pl.col("name") == 1).height,
    }



# -- dbt -------------------------------------------------------------------------------
@dataclass
class DbtRun:
    wall: float
    models: float  # sum of the model nodes' execution_time
    elapsed: float  # dbt's own elapsed_time for the invocation
    nodes: dict[str, float] = field(default_factory=dict)


def dbt(command: str, work: Path, logs: Path, warehouse: Path, variables: dict[str, Any],
        *extra: str) -> DbtRun:
    """One dbt invocation with a fresh target folder (as each Dagster run has)."""
    target = Path(tempfile.mkdtemp(prefix=f"target-{command}-", dir=work))
    env = {**os.environ, "LOOPER_LOGS": str(logs), "LOOPER_WAREHOUSE": str(warehouse),
           "DO_NOT_TRACK": "1", "DBT_LOG_PATH": str(target)}
    cmd = [str(DBT), command, "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
           "--target-path", str(target), "--vars", json.dumps(variables), *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stdout[-6000:]}\n{proc.stderr[-3000:]}")
    rr_path = target / "run_results.json"
    rr = json.loads(rr_path.read_text()) if rr_path.exists() else {"results": [], "elapsed_time": 0.0}
    nodes = {r["unique_id"]: float(r["execution_time"]) for r in rr["results"]}
    models = sum(t for u, t in nodes.items() if u.startswith("model."))
    return DbtRun(wall, models, float(rr.get("elapsed_time", 0.0)), nodes)


def dbt_duckdb_threads(work: Path, logs: Path, variables: dict[str, Any]) -> int:
    """DuckDB's ``threads`` setting inside dbt's own connection (profile ``threads`` is
    dbt's model concurrency, not DuckDB's)."""
    target = Path(tempfile.mkdtemp(prefix="target-show-", dir=work))
    env = {**os.environ, "LOOPER_LOGS": str(logs), "LOOPER_WAREHOUSE": str(work / "show.duckdb"),
           "DO_NOT_TRACK": "1", "DBT_LOG_PATH": str(target)}
    proc = subprocess.run(
        [str(DBT), "show", "--project-dir", str(DBT_DIR), "--profiles-dir", str(DBT_DIR),
         "--target-path", str(target), "--vars", json.dumps(variables), "--output", "json",
         "--log-format", "json", "--inline", "select current_setting('threads') as threads"],
        env=env, capture_output=True, text=True, check=True)
    for line in proc.stdout.splitlines():
        try:
            preview = json.loads(line).get("data", {}).get("preview")
        except ValueError:
            continue
        if preview:
            rows = json.loads(preview) if isinstance(preview, str) else preview
            return int(rows[0]["threads"])
    raise RuntimeError(f"no threads in dbt show output:\n{proc.stdout[-3000:]}")


def profile_threads() -> int:
    import yaml

    prof = yaml.safe_load((DBT_DIR / "profiles.yml").read_text())["looper"]
    return int(prof["outputs"][prof["target"]].get("threads", 1))


# -- the same five tables, directly in DuckDB ------------------------------------------
def direct_statements(logs: Path, variables: dict[str, Any]) -> list[tuple[str, str]]:
    uc, start, end = variables["use_case"], variables["start_date"], variables["end_date"]
    labels = variables["labels"]
    max_days = math.ceil(max(lb["window_hours"] for lb in labels) / 24) + 1
    src = "read_parquet('{}/{}/use_case={}/*/*.parquet', hive_partitioning = true)"
    dec_src, obs_src = src.format(logs, "decisions", uc), src.format(logs, "observations", uc)
    label_rows = ", ".join(
        f"('{lb['name']}', cast({int(lb['window_hours'] * HOUR_US)} as bigint), cast({lb['fill_value']} as double))"
        for lb in labels)
    agg = {"max": "max(o.value)", "sum": "sum(o.value)", "count": "cast(count(o.value) as double)"}
    value = "case l.label " + " ".join(
        f"when '{lb['name']}' then coalesce({agg[lb['aggregation']]}, any_value(l.fill_value))"
        if lb["aggregation"] != "count" else f"when '{lb['name']}' then {agg['count']}"
        for lb in labels) + " end"
    pivot = ", ".join(f"max(value) filter (where label = '{lb['name']}') as \"{lb['name']}\"" for lb in labels)
    label_cols = ", ".join(f'l."{lb["name"]}"' for lb in labels)
    exp_cols = ", ".join(f'"{lb["name"]}"' for lb in labels)
    s = f'"{uc}"'
    return [
        ("stg_decisions", f"""
create table {s}.stg_decisions as
select decision_id, use_case, subject_id, "timestamp" as decided_at, cast("date" as date) as decision_date,
       features, action, action_index, propensity, scores, model_version, blueprint_version,
       policy_version, explored, experiment_arm, assignment_probability
from {dec_src}
where cast("date" as date) >= date '{start}' and cast("date" as date) < date '{end}'
qualify row_number() over (partition by decision_id order by "timestamp") = 1"""),
        ("stg_observations", f"""
create table {s}.stg_observations as
select observation_id, decision_id, use_case, name, value, "timestamp" as observed_at,
       cast("date" as date) as observation_date
from {obs_src}
where cast("date" as date) >= date '{start}'
  and cast("date" as date) < date '{end}' + {max_days}
qualify row_number() over (partition by observation_id order by "timestamp") = 1"""),
        ("int_decision_labels", f"""
create table {s}.int_decision_labels as
with labels(label, window_us, fill_value) as (values {label_rows})
select d.decision_id, d.decision_date, l.label,
       {value} as value,
       count(o.value) as n_observations,
       min(epoch_us(o.observed_at) - epoch_us(d.decided_at)) / 1e6 as first_delay_s
from {s}.stg_decisions as d
cross join labels as l
left join {s}.stg_observations as o
  on o.decision_id = d.decision_id and o.name = l.label
  and o.observed_at >= d.decided_at
  and epoch_us(o.observed_at) < epoch_us(d.decided_at) + l.window_us
group by d.decision_id, d.decision_date, l.label"""),
        ("fct_training_examples", f"""
create table {s}.fct_training_examples as
with l as (
    select decision_id, {pivot}, sum(n_observations) as n_observations
    from {s}.int_decision_labels group by decision_id
)
select d.decision_id, d.subject_id, d.decided_at, d.decision_date, d.features, d.action,
       d.action_index, d.propensity, d.scores, d.explored, d.experiment_arm,
       d.assignment_probability, d.model_version, d.blueprint_version, d.policy_version,
       {label_cols}, l.n_observations
from {s}.stg_decisions as d join l using (decision_id)"""),
        ("fct_experiment_outcomes", f"""
create table {s}.fct_experiment_outcomes as
select decision_id, subject_id, decided_at, decision_date, features, experiment_arm, action,
       action_index, assignment_probability, {exp_cols}
from {s}.fct_training_examples where experiment_arm is not null"""),
    ]


@dataclass
class DirectRun:
    total: float
    steps: dict[str, float]


def direct(db: Path, logs: Path, variables: dict[str, Any], threads: int) -> DirectRun:
    steps: dict[str, float] = {}
    t0 = time.perf_counter()
    con = duckdb.connect(str(db))
    try:
        con.execute(f"set threads = {threads}")
        con.execute(f'create schema "{variables["use_case"]}"')
        for name, sql in direct_statements(logs, variables):
            t = time.perf_counter()
            con.execute(sql)
            steps[name] = time.perf_counter() - t
    finally:
        con.close()
    return DirectRun(time.perf_counter() - t0, steps)


def outcome(db: Path, variables: dict[str, Any]) -> dict[str, float]:
    s = f'"{variables["use_case"]}"'
    con = duckdb.connect(str(db), read_only=True)
    try:
        got: dict[str, float] = {m: con.execute(f"select count(*) from {s}.{m}").fetchone()[0] for m in MODELS}
        c, u, k = con.execute(f'select sum("click"), sum("unsubscribe"), sum(n_observations) '
                              f"from {s}.fct_training_examples").fetchone()
        ec, eu = con.execute(f'select sum("click"), sum("unsubscribe") from {s}.fct_experiment_outcomes').fetchone()
    finally:
        con.close()
    got.update(click=c, unsubscribe=u, n_observations=k, exp_click=ec, exp_unsubscribe=eu)
    return got


# -- the benchmark ---------------------------------------------------------------------
@dataclass
class SizeResult:
    n: int
    dbt_models: float
    dbt_wall: float
    dbt_startup: float  # wall time minus the models' time
    direct: float
    dbt_nodes: dict[str, float]
    direct_steps: dict[str, float]
    tests: DbtRun | None
    gen_s: float


def _min_by(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: min(r[k] for r in runs) for k in runs[0]}


def bench_size(n: int, variables: dict[str, Any], bp: Blueprint, repeats: int, threads: int,
               root: Path, run_tests: bool) -> SizeResult:
    work = Path(tempfile.mkdtemp(prefix=f"n{n}-", dir=root))
    logs = work / "logs"
    t0 = time.perf_counter()
    sim = simulate(logs, n, variables, bp)
    gen_s = time.perf_counter() - t0
    print(f"\nN = {n:,}: {sim.decision_rows:,} decisions ({sim.decisions:,} in the window), "
          f"{sim.observation_rows:,} observation rows written in {gen_s:.1f}s", flush=True)
    dbt_runs: list[DbtRun] = []
    direct_runs: list[DirectRun] = []
    tests = None
    for rep in range(repeats):
        wh = work / f"wh{rep}.duckdb"
        r = dbt("run", work, logs, wh, variables)
        got = outcome(wh, variables)
        assert got == sim.expected, f"dbt: {got} != expected {sim.expected}"
        dbt_runs.append(r)
        print(f"  dbt run    #{rep + 1}: models {r.models:7.2f}s  wall {r.wall:7.2f}s", flush=True)
        if run_tests and rep == repeats - 1:
            tests = dbt("test", work, logs, wh, variables)
            print(f"  dbt test     : {len(tests.nodes)} tests {sum(tests.nodes.values()):7.2f}s  "
                  f"wall {tests.wall:7.2f}s", flush=True)
        wh.unlink()
        db = work / f"direct{rep}.duckdb"
        d = direct(db, logs, variables, threads)
        got_direct = outcome(db, variables)
        assert got_direct == got, f"direct SQL: {got_direct} != dbt {got}"
        direct_runs.append(d)
        print(f"  direct SQL #{rep + 1}: total  {d.total:7.2f}s", flush=True)
        db.unlink()
    shutil.rmtree(work)
    nodes = _min_by([{k.rsplit(".", 1)[-1]: t for k, t in r.nodes.items()} for r in dbt_runs])
    return SizeResult(
        n=n,
        dbt_models=min(r.models for r in dbt_runs),
        dbt_wall=min(r.wall for r in dbt_runs),
        dbt_startup=min(r.wall - r.models for r in dbt_runs),
        direct=min(d.total for d in direct_runs),
        dbt_nodes=nodes,
        direct_steps=_min_by([d.steps for d in direct_runs]),
        tests=tests,
        gen_s=gen_s,
    )


def _slope(a: SizeResult | None, b: SizeResult, attr: str) -> str:
    if a is None:
        return "-"
    return f"{math.log(getattr(b, attr) / getattr(a, attr)) / math.log(b.n / a.n):.2f}"


def report(results: list[SizeResult], startup_empty: float, threads: int, prof_threads: int) -> None:
    print("\nper model, seconds (min over repeats): dbt execution_time / direct SQL")
    print("N          " + "  ".join(f"{m:>27s}" for m in MODELS))
    for r in results:
        print(f"{r.n:<10,d} " + "  ".join(
            f"{r.dbt_nodes.get(m, float('nan')):12.2f} / {r.direct_steps.get(m, float('nan')):12.2f}"
            for m in MODELS))
    print(f"\ndbt: `dbt run` (models only), fresh warehouse and target folder each run; profile "
          f"threads = {prof_threads} (dbt's model concurrency), DuckDB threads inside dbt = "
          f"{threads}; direct SQL: DuckDB threads = {threads}.")
    print(f"dbt start-up, `dbt run` with an empty selection: {startup_empty:.1f}s wall")
    head = ("| N | dbt models (s) | direct SQL (s) | ratio | dbt wall (s) | dbt start-up (s) "
            "| dbt s per M rows | direct s per M rows | slope dbt | slope direct | dbt test (s) |")
    print("\n" + head)
    print("|" + "---|" * (head.count("|") - 1))
    prev = None
    for r in results:
        t = f"{sum(r.tests.nodes.values()):.1f} / {r.tests.wall:.1f} wall" if r.tests else "-"
        print(f"| {r.n:,} | {r.dbt_models:.2f} | {r.direct:.2f} | {r.dbt_models / r.direct:.2f} "
              f"| {r.dbt_wall:.1f} | {r.dbt_startup:.1f} | {r.dbt_models / r.n * 1e6:.2f} "
              f"| {r.direct / r.n * 1e6:.2f} | {_slope(prev, r, 'dbt_models')} "
              f"| {_slope(prev, r, 'direct')} | {t} |")
        prev = r
    for r in results:
        if r.n >= 1_000_000:
            ok = r.dbt_models <= 1.5 * r.direct
            print(f"goal dbt models <= 1.5x direct at N = {r.n:,}: {'met' if ok else 'NOT met'} "
                  f"({r.dbt_models / r.direct:.2f}x)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    ap.add_argument("--sizes", default="100000,1000000,5000000",
                    help="comma-separated numbers of decisions in the window")
    ap.add_argument("--quick", action="store_true", help="N = 100k only")
    ap.add_argument("--repeats", type=int, default=2, help="runs per measurement; the minimum is reported")
    ap.add_argument("--no-tests", action="store_true", help="skip `dbt test`")
    ap.add_argument("--workdir", default=None, help="parent folder for the temporary data (default: system temp)")
    args = ap.parse_args()
    sizes = [100_000] if args.quick else [int(s) for s in args.sizes.split(",") if s.strip()]

    from looper_pipelines.defs.dbt import dbt_vars  # imports Dagster: kept out of the timings

    t_all = time.perf_counter()
    bp = load_blueprint(CATALOG / f"{USE_CASE}.yaml")
    end = START + timedelta(days=DAYS)
    variables = dbt_vars(bp, START.isoformat(), end.isoformat())
    print(f"use case {USE_CASE}, window [{START}, {end}), labels "
          + ", ".join(f"{lb['name']} {lb['window_hours']:g}h {lb['aggregation']}" for lb in variables["labels"]))
    root = Path(tempfile.mkdtemp(prefix="looper-bench-pipeline-", dir=args.workdir))
    try:
        logs0 = root / "empty-logs"
        (logs0 / "decisions").mkdir(parents=True)
        (logs0 / "observations").mkdir(parents=True)
        threads = dbt_duckdb_threads(root, logs0, variables)
        prof_threads = profile_threads()
        startup_empty = min(
            dbt("run", root, logs0, root / "empty.duckdb", variables, "--select", "none_such_model").wall
            for _ in range(args.repeats))
        print(f"DuckDB threads inside dbt: {threads} (profile threads: {prof_threads}); "
              f"dbt run with an empty selection: {startup_empty:.1f}s", flush=True)
        results = [bench_size(n, variables, bp, args.repeats, threads, root, not args.no_tests)
                   for n in sizes]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    report(results, startup_empty, threads, prof_threads)
    print(f"\ntotal {time.perf_counter() - t_all:.0f}s")


if __name__ == "__main__":
    main()
