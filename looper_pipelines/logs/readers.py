"""Readers: every durable record of a use case as a Polars frame.

A read sees the segments of live and dead writers (active and sealed) and the compacted
Parquet. It is safe while writers append and compaction runs: the segments are read
first, then the Parquet is listed, and a ``part-<stem>.parquet`` file is skipped when
segment ``<stem>`` was read. Compaction writes a segment's Parquet before it removes the
segment, so a record is never returned twice and never missed.
"""

from __future__ import annotations

import os
from pathlib import Path

import orjson
import polars as pl

from looper_pipelines.logs import segments as sg
from looper_pipelines.logs.records import DECISIONS, ID_COLUMN, JSON_COLUMNS, OBSERVATIONS
from looper_pipelines.logs.schemas import SCHEMAS


def empty_frame(kind: str) -> pl.DataFrame:
    return pl.DataFrame(schema=SCHEMAS[kind])


def records_to_frame(kind: str, payloads: list[bytes]) -> pl.DataFrame:
    """Segment payloads (JSON objects) as a frame of exactly ``SCHEMAS[kind]``."""
    schema = SCHEMAS[kind]
    if not payloads:
        return empty_frame(kind)
    json_cols = JSON_COLUMNS[kind]
    cols: dict[str, list] = {c: [] for c in schema}
    plain = [(c, cols[c].append) for c in schema if c not in json_cols]
    nested = [(c, cols[c].append) for c in json_cols]
    loads, dumps = orjson.loads, orjson.dumps
    # column by column as we go: no decoded record outlives its line (keeps the cyclic
    # garbage collector out of large reads)
    for p in payloads:
        get = loads(p).get
        for c, add in plain:
            add(get(c))
        for c, add in nested:
            v = get(c)
            add(v if v is None or type(v) is str else dumps(v).decode())
    build_schema = {c: (pl.Int64() if c == "timestamp" else t) for c, t in schema.items()}
    try:
        df = pl.DataFrame(cols, schema=build_schema)
    except Exception:  # a value of an unexpected type: null it rather than fail the read
        df = pl.DataFrame(cols, schema=build_schema, strict=False)
    return df.with_columns(pl.col("timestamp").cast(schema["timestamp"]))


def conform(kind: str, df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with exactly the columns and dtypes of ``SCHEMAS[kind]``."""
    schema = SCHEMAS[kind]
    exprs = []
    for c, t in schema.items():
        if c not in df.columns:
            exprs.append(pl.lit(None, dtype=t).alias(c))
        elif (
            c == "timestamp"
            and isinstance(df.schema[c], pl.Datetime)
            and df.schema[c].time_zone is None
        ):
            exprs.append(pl.col(c).cast(pl.Datetime("us")).dt.replace_time_zone("UTC"))
        else:
            exprs.append(pl.col(c).cast(t))
    return df.select(exprs)


def read_segment_payloads(logs: Path, kind: str, use_case: str) -> tuple[list[bytes], set[str]]:
    """Payloads of the valid prefix of every segment, and the stems that were read."""
    payloads: list[bytes] = []
    stems: set[str] = set()
    for ref in sg.list_segments(logs, kind, use_case):
        got = sg.read_segment_bytes(ref)
        if got is None:
            continue  # compacted meanwhile: its Parquet is listed below
        data, _ = got
        p, _ = sg.scan(data)
        payloads.extend(p)
        stems.add(ref.stem)
    return payloads, stems


def parquet_files(logs: Path, kind: str, use_case: str) -> list[Path]:
    base = sg.partition_dir(logs, kind, use_case)
    out: list[Path] = []
    try:
        dates = sorted(os.listdir(base))
    except FileNotFoundError:
        return out
    for d in dates:
        if not d.startswith("date="):
            continue
        try:
            names = sorted(os.listdir(base / d))
        except (FileNotFoundError, NotADirectoryError):
            continue
        out.extend(base / d / n for n in names if n.endswith(".parquet") and not n.startswith("."))
    return out


def compacted_days(logs: Path, kind: str, use_case: str) -> list[str]:
    """The days (``YYYY-MM-DD``) with compacted records of ``kind`` for ``use_case``."""
    return sorted({p.parent.name.removeprefix("date=") for p in parquet_files(logs, kind, use_case)})


def read_log(home: str | os.PathLike[str] | None, kind: str, use_case: str) -> pl.DataFrame:
    """Every durable record of ``kind`` for ``use_case``, sorted by timestamp then id."""
    sg.check_kind(kind)
    sg.check_use_case(use_case)
    logs = sg.logs_root(home)
    payloads, stems = read_segment_payloads(logs, kind, use_case)
    skip = {sg.parquet_name(s) for s in stems}
    frames = [records_to_frame(kind, payloads)]
    for f in parquet_files(logs, kind, use_case):
        if f.name in skip:
            continue
        frames.append(conform(kind, pl.read_parquet(f, hive_partitioning=False)))
    df = pl.concat(frames, how="vertical") if len(frames) > 1 else frames[0]
    idcol = ID_COLUMN[kind]
    df = df.sort(["timestamp", idcol], maintain_order=True)
    if kind == OBSERVATIONS:
        df = df.unique(subset=[idcol], keep="first", maintain_order=True)
    return df


def read_decisions(home: str | os.PathLike[str] | None, use_case: str) -> pl.DataFrame:
    """Every durable decision record of ``use_case`` (``DECISION_SCHEMA``; ``features`` and
    ``scores`` as JSON strings), sorted by timestamp then decision id."""
    return read_log(home, DECISIONS, use_case)


def read_observations(home: str | os.PathLike[str] | None, use_case: str) -> pl.DataFrame:
    """Every durable observation of ``use_case`` (``OBSERVATION_SCHEMA``), sorted by
    timestamp then id and deduplicated by ``observation_id`` (the first one is kept)."""
    return read_log(home, OBSERVATIONS, use_case)
