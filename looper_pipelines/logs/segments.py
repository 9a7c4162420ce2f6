"""Segment files: layout, naming, line format, scanning, liveness and torn-tail recovery.

Layout under the logs folder (``HomeLayout.logs``)::

    <logs>/<kind>/_segments/<use_case>/<stem>.open       active segment of a writer
    <logs>/<kind>/_segments/<use_case>/<stem>.seg        sealed segment (immutable)
    <logs>/<kind>/_segments/<use_case>/.<stem>.creating  being created (never read)
    <logs>/<kind>/_quarantine/<use_case>/...             bytes dropped by recovery/compaction
    <logs>/<kind>/use_case=<use_case>/date=<YYYY-MM-DD>/part-<stem>.parquet   compacted

Folders whose names start with ``_`` are skipped by Hive-style dataset readers, so a glob
over ``use_case=*/date=*/*.parquet`` only ever sees compacted files.

A segment is a sequence of lines ``<crc32 of the JSON, 8 lowercase hex> <JSON>\\n``; an
active segment is followed by preallocated zero bytes, where a scan stops.
The stem is ``<UTC creation time>-<pid>-<random token>-<sequence>``: unique across the
processes sharing a home, and sorting by creation time.

Liveness: a writer holds an exclusive ``flock`` on each of its ``.open`` segments for as
long as it may write to it. The kernel drops the lock when the process dies (even by
SIGKILL), so an ``.open`` segment whose lock can be taken belongs to a dead writer and may
be recovered: its torn tail (a partial or corrupt last line) is cut off, and it is sealed.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from looper_pipelines.home import HomeLayout
from looper_pipelines.logs.records import KINDS

SEGMENTS_DIR = "_segments"
QUARANTINE_DIR = "_quarantine"
OPEN_SUFFIX = ".open"
SEALED_SUFFIX = ".seg"
CREATING_SUFFIX = ".creating"
PART_PREFIX = "part-"

# a use case name is also a folder name: keep it to the blueprint name alphabet
USE_CASE_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
_STEM_RE = re.compile(r"^\d{8}T\d{12}Z-\d+-[0-9a-f]+-\d+$")


class SegmentError(ValueError):
    pass


# -- names and folders -------------------------------------------------------------------
def check_kind(kind: str) -> str:
    if kind not in KINDS:
        raise ValueError(f"unknown log kind {kind!r}; expected one of {KINDS}")
    return kind


def check_use_case(use_case: str) -> str:
    if not isinstance(use_case, str) or not USE_CASE_RE.match(use_case):
        raise ValueError(
            f"invalid use case name {use_case!r}: expected lowercase letters, digits and '_', "
            "starting with a letter, at most 63 characters"
        )
    return use_case


def logs_root(home: str | os.PathLike[str] | None) -> Path:
    return HomeLayout.of(home).logs


def segment_dir(logs: Path, kind: str, use_case: str) -> Path:
    return logs / kind / SEGMENTS_DIR / use_case


def quarantine_dir(logs: Path, kind: str, use_case: str) -> Path:
    return logs / kind / QUARANTINE_DIR / use_case


def partition_dir(logs: Path, kind: str, use_case: str) -> Path:
    """The Hive partition folder of a use case: holds ``date=<YYYY-MM-DD>`` folders."""
    return logs / kind / f"use_case={use_case}"


def parquet_name(stem: str) -> str:
    return f"{PART_PREFIX}{stem}.parquet"


def new_stem(pid: int, token: str, seq: int) -> str:
    t = datetime.now(UTC)
    return f"{t:%Y%m%dT%H%M%S%f}Z-{pid}-{token}-{seq:06d}"


@dataclass(frozen=True)
class SegmentRef:
    kind: str
    use_case: str
    path: Path

    @property
    def stem(self) -> str:
        return self.path.name.rsplit(".", 1)[0]

    @property
    def sealed(self) -> bool:
        return self.path.name.endswith(SEALED_SUFFIX)

    def sibling(self, suffix: str) -> Path:
        return self.path.with_name(self.stem + suffix)


def use_cases(logs: Path, kind: str) -> list[str]:
    """Use cases that have segments or compacted Parquet for ``kind``."""
    found: set[str] = set()
    with contextlib.suppress(FileNotFoundError):
        found.update(p.name for p in (logs / kind / SEGMENTS_DIR).iterdir() if p.is_dir())
    with contextlib.suppress(FileNotFoundError):
        found.update(
            p.name.split("=", 1)[1]
            for p in (logs / kind).iterdir()
            if p.is_dir() and p.name.startswith("use_case=")
        )
    return sorted(u for u in found if USE_CASE_RE.match(u))


def list_segments(logs: Path, kind: str, use_case: str) -> list[SegmentRef]:
    """Active and sealed segments of one (kind, use case), oldest first."""
    d = segment_dir(logs, kind, use_case)
    try:
        names = os.listdir(d)
    except FileNotFoundError:
        return []
    refs = []
    for name in names:
        stem, dot, suffix = name.rpartition(".")
        if dot and ("." + suffix) in (OPEN_SUFFIX, SEALED_SUFFIX) and _STEM_RE.match(stem):
            refs.append(SegmentRef(kind, use_case, d / name))
    refs.sort(key=lambda r: (r.stem, r.path.name))
    return refs


def iter_all_segments(logs: Path, use_case: str | None = None) -> Iterator[SegmentRef]:
    for kind in KINDS:
        ucs = [use_case] if use_case is not None else use_cases(logs, kind)
        for uc in ucs:
            yield from list_segments(logs, kind, uc)


# -- line format -------------------------------------------------------------------------
def encode_line(payload: bytes) -> bytes:
    """One segment line for a JSON payload (``_append.c`` writes the same bytes)."""
    return b"%08x " % zlib.crc32(payload) + payload + b"\n"


def scan(data: bytes) -> tuple[list[bytes], int]:
    """The JSON payloads of the valid prefix of a segment, and that prefix's length.

    Stops at the first line that is incomplete (no newline), malformed or fails its crc:
    nothing after a damaged line is trusted.
    """
    payloads: list[bytes] = []
    crc32 = zlib.crc32
    pos = 0
    end = len(data)
    find = data.find
    while pos < end:
        nl = find(b"\n", pos)
        if nl < 0:
            break
        if nl - pos < 10 or data[pos + 8] != 0x20:
            break
        payload = data[pos + 9 : nl]
        try:
            ok = int(data[pos : pos + 8], 16) == crc32(payload)
        except ValueError:
            ok = False
        if not ok:
            break
        payloads.append(payload)
        pos = nl + 1
    return payloads, pos


def damaged_tail(data: bytes, valid: int) -> bytes:
    """The bytes after the valid prefix of a segment that are not the zeros a writer
    preallocates past its last record: a torn or corrupt line (empty if none)."""
    return data[valid:].strip(b"\0")


def read_segment_bytes(ref: SegmentRef) -> tuple[bytes, SegmentRef] | None:
    """The bytes of a segment, following a concurrent ``.open`` → ``.seg`` seal.

    None when the segment is gone: it was compacted (its Parquet is written before the
    segment is removed) or was empty.
    """
    candidates = [ref.path]
    if not ref.sealed:
        candidates.append(ref.sibling(SEALED_SUFFIX))
    for path in candidates:
        try:
            with open(path, "rb") as f:
                return f.read(), SegmentRef(ref.kind, ref.use_case, path)
        except FileNotFoundError:
            continue
    return None


# -- locking and durability helpers ------------------------------------------------------
def try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except FileNotFoundError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_live(path: Path) -> bool:
    """Whether a writer holds the lock of this ``.open`` segment (False if it is gone)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return False
    try:
        return not try_lock(fd)
    finally:
        os.close(fd)


def write_quarantine(logs: Path, ref: SegmentRef, data: bytes, suffix: str) -> Path:
    qdir = quarantine_dir(logs, ref.kind, ref.use_case)
    qdir.mkdir(parents=True, exist_ok=True)
    dest = qdir / f"{ref.stem}{suffix}"
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)
    return dest


# -- recovery ----------------------------------------------------------------------------
def recover_segment(logs: Path, ref: SegmentRef) -> dict[str, int] | None:
    """Recover one ``.open`` segment if its writer is dead; None if it is live or gone.

    Keeps the valid prefix, copies any dropped bytes (not the writer's preallocated zeros)
    to the quarantine folder, truncates,
    fsyncs and renames the segment to ``.seg`` (or removes it if nothing valid is left).
    """
    try:
        fd = os.open(ref.path, os.O_RDWR)
    except FileNotFoundError:
        return None
    try:
        if not try_lock(fd):
            return None  # a live writer holds it
        try:
            same = os.fstat(fd).st_ino == os.stat(ref.path).st_ino
        except FileNotFoundError:
            same = False
        if not same:
            return None  # sealed or recovered by someone else meanwhile
        size = os.fstat(fd).st_size
        with open(fd, "rb", closefd=False) as f:
            data = f.read(size)
        payloads, valid = scan(data)
        torn = damaged_tail(data, valid)
        dropped = len(torn)
        if dropped:
            write_quarantine(logs, ref, torn, ".torn")
        if valid < len(data):
            os.ftruncate(fd, valid)
        os.fsync(fd)
        if valid == 0:
            os.unlink(ref.path)
        else:
            os.rename(ref.path, ref.sibling(SEALED_SUFFIX))
        fsync_dir(ref.path.parent)
        return {"records": len(payloads), "bytes_dropped": dropped, "removed": int(valid == 0)}
    finally:
        os.close(fd)  # releases the lock


def _clean_creating(d: Path) -> int:
    """Remove '.creating' files of dead writers (killed between creating a segment and
    naming it). A live writer holds the lock, or, if it has not taken it yet, finds its
    file gone when it renames it and simply creates another."""
    removed = 0
    try:
        names = [n for n in os.listdir(d) if n.endswith(CREATING_SUFFIX)]
    except FileNotFoundError:
        return 0
    for name in names:
        path = d / name
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            continue
        try:
            if try_lock(fd) and os.fstat(fd).st_ino == os.stat(path).st_ino:
                os.unlink(path)
                removed += 1
        except FileNotFoundError:
            pass
        finally:
            os.close(fd)
    return removed


def recover(home: str | os.PathLike[str] | None = None, use_case: str | None = None) -> dict:
    """Seal the ``.open`` segments of dead writers, dropping their torn tails.

    Segments of live writers (their lock is held) are left alone. Safe to run at any time,
    from any process, concurrently with writers, readers and compaction. Returns
    ``segments_recovered``, ``segments_removed`` (nothing valid in them), ``records_kept``,
    ``bytes_dropped`` (copied to ``_quarantine``) and ``live_segments`` (left alone).
    """
    return recover_logs(logs_root(home), use_case)


def recover_logs(logs: Path, use_case: str | None = None) -> dict:
    if use_case is not None:
        check_use_case(use_case)
    report = {
        "segments_recovered": 0,
        "segments_removed": 0,
        "records_kept": 0,
        "bytes_dropped": 0,
        "live_segments": 0,
    }
    for ref in iter_all_segments(logs, use_case):
        if ref.sealed:
            continue
        r = recover_segment(logs, ref)
        if r is None:
            if ref.path.exists():
                report["live_segments"] += 1
            continue
        report["segments_recovered"] += 1
        report["segments_removed"] += r["removed"]
        report["records_kept"] += r["records"]
        report["bytes_dropped"] += r["bytes_dropped"]
    for kind in KINDS:
        for uc in [use_case] if use_case is not None else use_cases(logs, kind):
            _clean_creating(segment_dir(logs, kind, uc))
    return report
