"""Compaction: sealed segments → Hive-partitioned Parquet.

Each sealed segment (after ``recover`` has sealed those of dead writers) becomes one
Parquet file per UTC date of its records::

    <logs>/<kind>/use_case=<use_case>/date=<YYYY-MM-DD>/part-<segment stem>.parquet

written with the exact record schema (zstd), to a temporary name, fsynced and renamed;
only then is the segment removed. The names are deterministic, so a run that crashed half
way is simply repeated. Segments of live writers are never touched. One compaction runs at
a time per home (an flock on ``<logs>/_compaction.lock``); writers and readers go on.

A compaction that was killed leaves its temporary files behind (``.part-<stem>.parquet.
<pid>.tmp`` in the date folders, ``.<stem>.<torn|corrupt>.<pid>.tmp`` in the quarantine).
The next compaction removes them before it starts: with the lock held no other compaction
is writing Parquet, so every temporary file in a date folder is stale; a quarantine file
may also be written by ``recover`` (which takes no lock), so one there is removed only
when the process its name holds is gone and it is older than a minute.
"""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import polars as pl

from looper_pipelines.logs import segments as sg
from looper_pipelines.logs.readers import records_to_frame
from looper_pipelines.logs.records import ID_COLUMN, KINDS

LOCK_NAME = "_compaction.lock"
_EPOCH = "1970-01-01"
TMP_SUFFIX = ".tmp"
STALE_QUARANTINE_TMP_S = 60.0  # a quarantine file is written in well under this


@contextmanager
def _exclusive(logs: Path) -> Iterator[None]:
    logs.mkdir(parents=True, exist_ok=True)
    fd = os.open(logs / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _tmp_files(folder: Path) -> list[Path]:
    """Temporary files (``.<name>.<pid>.tmp``) directly in ``folder``."""
    try:
        names = os.listdir(folder)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [folder / n for n in names if n.startswith(".") and n.endswith(TMP_SUFFIX)]


def _writer_gone(path: Path, now: float) -> bool:
    """Whether the process that wrote temporary file ``path`` (its pid is in the name) is
    gone and the file is old enough that no live writer can still be at it."""
    try:
        pid = int(path.name[: -len(TMP_SUFFIX)].rsplit(".", 1)[1])
    except (IndexError, ValueError):
        return False  # not a name this package writes
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
        return False  # alive (or a reused pid): leave it
    except ProcessLookupError:
        pass
    except PermissionError:
        return False  # alive, another user's
    try:
        return now - path.stat().st_mtime > STALE_QUARANTINE_TMP_S
    except FileNotFoundError:
        return False


def remove_stale_tmp(logs: Path, use_case: str | None = None) -> int:
    """Remove the temporary files killed compactions left (call with the compaction lock
    held; see the module docstring); returns how many were removed."""
    now = time.time()
    stale: list[Path] = []
    for kind in KINDS:
        for uc in [use_case] if use_case is not None else sg.use_cases(logs, kind):
            base = sg.partition_dir(logs, kind, uc)
            with suppress(FileNotFoundError):
                for d in os.listdir(base):
                    if d.startswith("date="):
                        stale.extend(_tmp_files(base / d))
            q = sg.quarantine_dir(logs, kind, uc)
            stale.extend(p for p in _tmp_files(q) if _writer_gone(p, now))
    removed = 0
    for path in stale:
        with suppress(FileNotFoundError):
            path.unlink()
            removed += 1
    return removed


def _write_parquet(df: pl.DataFrame, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        df.write_parquet(tmp, compression="zstd", statistics=True)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, dest)
    except BaseException:
        if tmp.exists():
            tmp.unlink()
        raise
    sg.fsync_dir(dest.parent)


def compact_segment(logs: Path, ref: sg.SegmentRef) -> dict[str, int]:
    """Compact one sealed segment; returns rows and files written."""
    got = sg.read_segment_bytes(ref)
    if got is None:
        return {"rows": 0, "files": 0, "segments": 0}
    data, ref = got
    payloads, valid = sg.scan(data)
    df = records_to_frame(ref.kind, payloads)
    files = 0
    if df.height:
        idcol = ID_COLUMN[ref.kind]
        df = df.sort(["timestamp", idcol], maintain_order=True).with_columns(
            pl.col("timestamp").dt.date().cast(pl.Utf8).fill_null(_EPOCH).alias("_date")
        )
        base = sg.partition_dir(logs, ref.kind, ref.use_case)
        for date in df.get_column("_date").unique(maintain_order=True).to_list():
            part = df.filter(pl.col("_date") == date).drop("_date")
            _write_parquet(part, base / f"date={date}" / sg.parquet_name(ref.stem))
            files += 1
    damaged = sg.damaged_tail(data, valid)
    if damaged:
        # a sealed segment is normally whole; keep what could not be read for inspection
        sg.write_quarantine(logs, ref, damaged, ".corrupt")
    with suppress(FileNotFoundError):
        os.unlink(ref.path)
    sg.fsync_dir(ref.path.parent)
    return {"rows": df.height, "files": files, "segments": 1}


def compact(home: str | os.PathLike[str] | None = None, use_case: str | None = None) -> dict:
    """Recover the segments of dead writers, then compact every sealed segment (of one use
    case, or of all) into Parquet. Returns ``segments_compacted``, ``rows``,
    ``files_written``, ``temp_files_removed`` (left by killed compactions) and the
    recovery figures."""
    logs = sg.logs_root(home)
    if use_case is not None:
        sg.check_use_case(use_case)
    report = {"segments_compacted": 0, "rows": 0, "files_written": 0}
    with _exclusive(logs):
        report["temp_files_removed"] = remove_stale_tmp(logs, use_case)
        rec = sg.recover_logs(logs, use_case)
        for ref in sg.iter_all_segments(logs, use_case):
            if not ref.sealed:
                continue  # a live writer's active segment
            r = compact_segment(logs, ref)
            report["segments_compacted"] += r["segments"]
            report["rows"] += r["rows"]
            report["files_written"] += r["files"]
    for k in ("segments_recovered", "bytes_dropped", "live_segments"):
        report[k] = rec[k]
    return report
