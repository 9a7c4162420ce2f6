"""``LogStore``: the append-only segment writer of one process.

An append encodes the record with orjson, prefixes its crc32 and copies the whole line
into the segment file through a shared memory mapping (``MAP_SHARED``). When the copy
returns the line is in the operating system's page cache, exactly where an unbuffered
``write`` would have put it: a killed process loses nothing it acknowledged, and no
system call is made per record. At default durability this path runs in C
(``_append.c``, built by ``setup.py`` when a C compiler is there) under the same lock and
on the same state as ``append_default``, which it calls for anything else: opening a
segment, extending the mapped window, a malformed record. (Strict mode ``pwrite``s the line instead: an fsync after
stores through a mapping costs two to three times as much.)

The file grows ahead of the records by writing zeros (done by the background thread, so
the append path rarely waits for it). That reserves the disk space, so a full disk fails
the append that needs it, with nothing written, rather than faulting on a later store;
and it puts the pages in the page cache, so stores do not stop to allocate them. The
zeros past the last record cannot be mistaken for a record (see ``segments.scan``);
sealing truncates the file to its records. (On copy-on-write or compressing filesystems,
btrfs or ZFS for instance, writing zeros reserves nothing: there a full disk can fault a
store through the mapping, which ends the process. Keep the logs on a conventional
filesystem such as ext4 or XFS, or use strict mode, which writes with ``pwrite``.)

Durability modes:

- ``default``: a background daemon thread fsyncs the segments written since its last
  round every ``fsync_interval_s`` (a machine crash loses at most that window).
- ``strict``: ``append`` returns after an fsync covering the record. Concurrent callers
  share fsyncs (group commit): one of the waiting threads becomes the leader and fsyncs
  everything written so far while the others wait on a condition.
- ``disabled``: ``append`` does nothing (to measure what logging costs).

Syncing is ``fdatasync`` on the descriptor, which on Linux writes back pages dirtied
through the mapping as well as written ones.

Each writer has one active segment per (kind, use case), ``<stem>.open``, on which it
holds an exclusive ``flock`` (see ``segments``). A segment is retired when it reaches
``max_segment_bytes`` (checked at append) or ``max_segment_age_s`` (checked by the
background thread, at least every ``min(fsync_interval_s, max_segment_age_s / 4)``, so
appends never read the clock); the next append opens a new segment, and the background
thread unmaps the retired one, truncates it to its records, fsyncs it, renames it to
``<stem>.seg`` (sealed) and closes it, off the append path.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import threading
import time
import warnings
import weakref
from pathlib import Path
from typing import Any, Literal

import orjson

from looper_pipelines.home import HomeLayout
from looper_pipelines.logs import segments as sg
from looper_pipelines.logs.records import ID_COLUMN, KINDS

try:  # the default-durability append in C (setup.py builds it when a compiler is there)
    from looper_pipelines.logs import _append
except ImportError:  # pragma: no cover - not built: the same append in Python
    _append = None  # type: ignore[assignment]

# What the C append reads and writes are C fields of these bases; without it, slots.
if _append is not None:
    _SegmentBase: type = _append.SegmentState
    _WriterBase: type = _append.WriterState
    _STATE_SLOTS: tuple[str, ...] = ()
else:  # pragma: no cover
    _SegmentBase = _WriterBase = object
    _STATE_SLOTS = ("map", "map_end", "map_start", "size")

Durability = Literal["default", "strict", "disabled"]
DURABILITIES = ("default", "strict", "disabled")

_DUMPS = orjson.dumps
_OPTS = orjson.OPT_SERIALIZE_NUMPY
_MONOTONIC = time.monotonic
_ID_COLUMN = dict(ID_COLUMN)
_PAGE = mmap.ALLOCATIONGRANULARITY
# The file grows by writing zeros in steps of this many bytes, ahead of the records (1 MiB:
# about 2,000 decision records). Writing them reserves the disk space, so a full disk
# fails the append that needs it (nothing written) instead of faulting on a store through
# the mapping, and puts the pages in the page cache, so stores into them do not stop to
# allocate pages.
_GROW_BYTES = 1 << 20
_AHEAD_BYTES = 2 * _GROW_BYTES  # the flusher keeps this much zeroed ahead of the records
_ZEROS = memoryview(bytes(_GROW_BYTES))
_PWRITE = os.pwrite
_DATASYNC = getattr(os, "fdatasync", os.fsync)


class _Segment(_SegmentBase):
    __slots__ = (
        "allocated",
        "closed",
        "deadline",
        "dir_synced",
        "fd",
        "grow_lock",
        "key",
        "path",
        "sealing",
        "sync_lock",
        "synced",
        *_STATE_SLOTS,  # size, map, map_start, map_end
    )

    def __init__(self, key: tuple[str, str], path: Path, fd: int, deadline: float) -> None:
        self.key = key
        self.path = path
        self.fd = fd
        self.size = 0  # bytes acknowledged (written in whole lines)
        self.allocated = 0  # file size: records, then zeros (guarded by grow_lock)
        self.grow_lock = threading.Lock()  # serialises growing the file and sealing it
        self.sealing = False  # set under grow_lock: the file is not grown any more
        self.map: mmap.mmap | None = None  # the window appends copy into
        self.map_start = 0  # file offsets of that window
        self.map_end = 0
        self.synced = 0  # bytes known to be fsynced
        self.deadline = deadline
        self.dir_synced = False  # the directory entry of the new file is durable
        self.closed = False
        self.sync_lock = threading.Lock()  # serialises fsync and sealing of this segment


def _check_record(kind: Any, record: Any) -> None:
    """The full check behind the append paths' one-line test: raises ValueError naming
    the problem, or returns for a record that is fine after all (a dict subclass, an id
    of a str subclass)."""
    if kind not in KINDS:
        raise ValueError(f"unknown log kind {kind!r}; expected one of {KINDS}")
    if not isinstance(record, dict):
        raise ValueError(f"a {kind} record must be a dict, got {type(record).__name__}")
    idcol = _ID_COLUMN[kind]
    if not isinstance(record.get(idcol), str):
        raise ValueError(f"a {kind} record needs {idcol!r} as a string, got {record.get(idcol)!r}")
    ts = record.get("timestamp")
    if not isinstance(ts, int) or isinstance(ts, bool):
        raise ValueError(
            f"a {kind} record needs 'timestamp' as an int (epoch microseconds, UTC), got {ts!r}"
        )


def _record_line(kind: str, record: dict) -> bytes:
    """The segment line of a record (checked, then encoded with orjson)."""
    if (
        type(record) is not dict
        or type(record.get(_ID_COLUMN.get(kind))) is not str
        or type(record.get("timestamp")) is not int
    ):
        _check_record(kind, record)
    try:
        data = _DUMPS(record, option=_OPTS)
    except TypeError as exc:  # orjson.JSONEncodeError
        raise ValueError(f"cannot encode the {kind} record as JSON: {exc}") from None
    return sg.encode_line(data)


class _Writer(_WriterBase):
    """The state of a LogStore; the background thread refers to this, not to the store.
    (``lock``, ``active``, ``max_bytes`` and ``seq`` are C fields when the C append is
    built.)"""

    def __init__(
        self,
        logs: Path,
        durability: str,
        fsync_interval_s: float,
        max_segment_bytes: int,
        max_segment_age_s: float,
    ) -> None:
        self.logs = logs
        self.durability = durability
        self.interval = fsync_interval_s
        # the background thread also retires segments past their age, so appends need not
        # read the clock
        self.tick_s = min(fsync_interval_s, max(0.005, max_segment_age_s / 4))
        self.max_bytes = max_segment_bytes
        self.max_age = max_segment_age_s
        self._init_state()
        if hasattr(os, "register_at_fork"):
            ref = weakref.ref(self)
            os.register_at_fork(after_in_child=lambda: _after_fork(ref))

    def _init_state(self) -> None:
        # guards the active map, sizes and the sequence (the C append takes _append.Lock
        # without a method call)
        self.lock = _append.Lock() if _append is not None else threading.Lock()
        self.commit = threading.Condition(threading.Lock())  # group commit (strict)
        self.wake = threading.Event()
        self.stop = threading.Event()
        self.active: dict[tuple[str, str], _Segment] = {}
        self.retired: list[_Segment] = []  # detached, waiting to be sealed
        self.closed = False
        self.thread: threading.Thread | None = None
        self.token = os.urandom(4).hex()
        self.seg_seq = 0
        self.seq = 0  # records acknowledged
        self.durable_seq = 0  # strict: records covered by a finished fsync
        self.syncing = False
        self.error: BaseException | None = None
        self.counts = {
            "fsyncs": 0,
            "dir_fsyncs": 0,
            "sync_rounds": 0,
            "segments_opened": 0,
            "segments_sealed": 0,
            "fsync_errors": 0,
        }
        self.sealed_bytes = 0
        self.counts_lock = threading.Lock()

    def _after_fork(self) -> None:
        # The child must not write to (or unlock) the parent's segments. Closing the
        # inherited descriptors keeps the parent's flocks: they belong to the open file
        # descriptions, which the parent still holds.
        inherited = [*self.active.values(), *self.retired]
        closed = self.closed
        self._init_state()
        self.closed = closed
        for seg in inherited:
            if seg.closed:  # sealed meanwhile: its descriptor number may be reused already
                continue
            if seg.map is not None:
                seg.map.close()  # the child's copy of the mapping only
            with contextlib.suppress(OSError):
                os.close(seg.fd)

    def _count(self, name: str, n: int = 1) -> None:
        with self.counts_lock:
            self.counts[name] += n

    # -- the append paths -----------------------------------------------------------------
    def append_default(self, kind: str, use_case: str, record: dict) -> None:
        line = _record_line(kind, record)
        with self.lock:
            seg, start, end = self._room(kind, use_case, len(line))
            base = seg.map_start
            seg.map[start - base : end - base] = line  # type: ignore[index]
            seg.size = end
            self.seq += 1

    def append_strict(self, kind: str, use_case: str, record: dict) -> None:
        line = _record_line(kind, record)
        with self.lock:
            seg, start, end = self._room(kind, use_case, len(line))
            # into the zeroed stretch with pwrite: an fsync after a store through the
            # mapping costs two to three times as much
            n = _PWRITE(seg.fd, line, start)
            if n != len(line):  # the next line overwrites the partial one
                raise OSError(
                    f"short write to {seg.path} ({n} of {len(line)} bytes); record not logged"
                )
            seg.size = end
            self.seq += 1
            seq = self.seq
        self.wait_durable(seq)

    def _room(self, kind: str, use_case: str, n: int) -> tuple[_Segment, int, int]:
        """The active segment of (kind, use case), opened or rotated as needed, and the
        file offsets where the next ``n`` bytes go, inside its mapped window (called with
        self.lock held; raises OSError with nothing written)."""
        seg = self.active.get((kind, use_case))
        if seg is None or seg.size >= self.max_bytes:
            seg = self._next_segment(kind, use_case)
        start = seg.size
        end = start + n
        if end > seg.map_end:
            self._extend(seg, end)
        return seg, start, end

    # -- slow paths (called with self.lock held) ------------------------------------------
    def _next_segment(self, kind: str, use_case: str) -> _Segment:
        if self.closed:
            raise ValueError("append to a closed LogStore")
        key = (kind, use_case)
        old = self.active.pop(key, None)
        if old is not None:
            self._retire(old)
        sg.check_kind(kind)
        sg.check_use_case(use_case)
        if self.error is not None:
            raise OSError(f"the log store failed earlier: {self.error}") from self.error
        seg = self._create(key)
        self.active[key] = seg
        self._ensure_thread()
        return seg

    def _create(self, key: tuple[str, str]) -> _Segment:
        d = sg.segment_dir(self.logs, *key)
        d.mkdir(parents=True, exist_ok=True)
        while True:
            self.seg_seq += 1
            stem = sg.new_stem(os.getpid(), self.token, self.seg_seq)
            tmp = d / f".{stem}{sg.CREATING_SUFFIX}"
            path = d / f"{stem}{sg.OPEN_SUFFIX}"
            # read-write: a shared writable mapping needs it
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o644)
            try:
                # Lock before the file gets the name that recovery looks at. A recovery may
                # take a '.creating' file for a dead writer's and remove it; then the rename
                # fails and another name is tried.
                fcntl.flock(fd, fcntl.LOCK_EX)
                os.rename(tmp, path)
            except FileNotFoundError:
                os.close(fd)
                continue
            except BaseException:
                os.close(fd)
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
            self._count("segments_opened")
            return _Segment(key, path, fd, _MONOTONIC() + self.max_age)

    def _retire(self, seg: _Segment) -> None:
        self.retired.append(seg)
        self.wake.set()

    def _extend(self, seg: _Segment, end: int) -> None:
        """Map a window of ``seg`` from the page holding the next byte to write up to the
        end of its zeroed stretch, growing the file first if that does not reach ``end``
        (usually the flusher has grown it ahead). A line never straddles two windows.
        Raises OSError (disk full, out of memory) before anything is written; the segment
        stays usable."""
        start = seg.size - seg.size % _PAGE
        with seg.grow_lock:
            if seg.allocated < end:
                try:
                    _grow(seg, end)  # what this record needs
                except OSError as exc:
                    raise OSError(
                        exc.errno,
                        f"cannot extend {seg.path.name}: {exc.strerror}; record not logged",
                    ) from None
                with contextlib.suppress(OSError):  # and, if there is room, a stretch more
                    _grow(seg, min(start + _GROW_BYTES, self._grow_limit()))
            stop = seg.allocated
            window = mmap.mmap(seg.fd, stop - start, offset=start)
        old = seg.map
        seg.map, seg.map_start, seg.map_end = window, start, stop
        if old is not None:
            old.close()
        self.wake.set()  # the flusher zeroes the next stretch

    def prepare(self) -> None:
        """Grow each active segment so that ``_AHEAD_BYTES`` of zeros lie past its records
        (off the append path; a full disk is reported by the append that needs space)."""
        with self.lock:
            todo = [(seg, seg.size) for seg in self.active.values()]
        for seg, size in todo:
            if seg.allocated - size >= _AHEAD_BYTES:
                continue
            with seg.grow_lock:
                if seg.sealing:
                    continue
                with contextlib.suppress(OSError):
                    _grow(seg, min(size + _AHEAD_BYTES, self._grow_limit()))

    def _grow_limit(self) -> int:
        """No zeros past where the segment retires (a record crossing that point is
        given its room by the append itself)."""
        return self.max_bytes + _PAGE

    def _ensure_thread(self) -> None:
        if self.durability == "disabled":
            return
        t = self.thread
        if t is None or not t.is_alive():
            t = threading.Thread(target=self._run, name="looper-log-flusher", daemon=True)
            self.thread = t
            t.start()

    # -- durability ----------------------------------------------------------------------
    def sync(self) -> int:
        """Fsync everything acknowledged so far; returns the sequence number covered."""
        with self.lock:
            target = self.seq
            todo = [
                (s, s.size)
                for s in (*self.active.values(), *self.retired)
                if s.size > s.synced or not s.dir_synced
            ]
        if todo:
            self._count("sync_rounds")
        for seg, size in todo:
            with seg.sync_lock:
                if seg.closed:
                    continue  # sealing fsynced it
                if seg.synced < size:
                    try:
                        _DATASYNC(seg.fd)
                    except OSError as exc:
                        self._failed(exc)
                        raise
                    self._count("fsyncs")
                    seg.synced = size
                if not seg.dir_synced:
                    sg.fsync_dir(seg.path.parent)
                    self._count("dir_fsyncs")
                    seg.dir_synced = True
        return target

    def _failed(self, exc: BaseException) -> None:
        # after a failed fsync the kernel may have dropped the dirty pages: never claim
        # durability again for this store
        self.error = exc
        self._count("fsync_errors")

    def wait_durable(self, seq: int) -> None:
        commit = self.commit
        with commit:
            while self.durable_seq < seq:
                if self.error is not None:
                    raise OSError(f"fsync failed: {self.error}") from self.error
                if self.syncing:
                    commit.wait()
                    continue
                self.syncing = True  # this thread leads the next group commit
                commit.release()
                covered = 0
                try:
                    time.sleep(0)  # let threads that are about to append join this commit
                    covered = self.sync()
                finally:
                    commit.acquire()
                    self.syncing = False
                    self.durable_seq = max(self.durable_seq, covered)
                    commit.notify_all()

    # -- background thread ---------------------------------------------------------------
    def _run(self) -> None:
        next_sync = _MONOTONIC() + self.interval
        while not self.stop.is_set():
            self.wake.wait(self.tick_s)
            self.wake.clear()
            try:
                now = _MONOTONIC()
                self.tick(now, sync=now >= next_sync)
                if now >= next_sync:
                    next_sync = now + self.interval
            except Exception as exc:  # keep going; the error is in stats / raised in strict
                warnings.warn(f"log flusher: {exc!r}", RuntimeWarning, stacklevel=1)
                self.stop.wait(self.interval)

    def tick(self, now: float, sync: bool = True) -> None:
        """Zero the next stretch of active segments, retire segments past their age or
        size, seal retired segments, and (default durability) fsync what was written since
        the last round."""
        self.prepare()
        with self.lock:
            for key, seg in list(self.active.items()):
                if seg.deadline <= now or seg.size >= self.max_bytes:
                    del self.active[key]
                    self.retired.append(seg)
            retired = list(self.retired)
        for seg in retired:
            self._seal(seg)
        if sync and self.durability == "default":
            self.sync()

    def _seal(self, seg: _Segment) -> None:
        with seg.sync_lock:
            if seg.closed:
                return
            if seg.map is not None:
                seg.map.close()
                seg.map = None
            try:
                with seg.grow_lock:  # waits for the flusher's zeroes, if any
                    seg.sealing = True
                    if seg.allocated > seg.size:
                        os.ftruncate(seg.fd, seg.size)  # drop the zeros past the records
                        seg.allocated = seg.size
                os.fsync(seg.fd)
            except OSError as exc:
                self._failed(exc)
                raise
            self._count("fsyncs")
            seg.synced = seg.size
            if seg.size == 0:
                os.unlink(seg.path)
            else:
                os.rename(seg.path, seg.path.with_name(seg.path.stem + sg.SEALED_SUFFIX))
            sg.fsync_dir(seg.path.parent)
            self._count("dir_fsyncs")
            seg.dir_synced = True
            os.close(seg.fd)  # releases the flock
            seg.closed = True
        with self.lock:
            with contextlib.suppress(ValueError):
                self.retired.remove(seg)
            self.sealed_bytes += seg.size
        self._count("segments_sealed")

    def seal_all(self) -> None:
        with self.lock:
            self.retired.extend(self.active.values())
            self.active.clear()
            retired = list(self.retired)
        for seg in retired:
            self._seal(seg)

    def close(self) -> None:
        with self.lock:
            if self.closed:
                return
            self.closed = True
            self.retired.extend(self.active.values())
            self.active.clear()
            thread = self.thread
        self.stop.set()
        self.wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        errors = []
        for seg in list(self.retired):
            try:
                self._seal(seg)
            except OSError as exc:
                errors.append(exc)
        if errors:
            raise errors[0]

    def stats(self) -> dict[str, int]:
        with self.lock:
            out = {
                "appends": self.seq,
                "bytes": self.sealed_bytes
                + sum(s.size for s in (*self.active.values(), *self.retired)),
                "active_segments": len(self.active),
            }
        with self.counts_lock:
            out.update(self.counts)
        return out


def _grow(seg: _Segment, end: int) -> None:
    """Write zeros from the end of ``seg``'s file to at least ``end`` (grow_lock held)."""
    end += -end % _PAGE
    while seg.allocated < end:
        n = _PWRITE(seg.fd, _ZEROS[: min(_GROW_BYTES, end - seg.allocated)], seg.allocated)
        seg.allocated += n  # a short write is followed by an error on the next one


def _after_fork(ref: weakref.ref[_Writer]) -> None:
    w = ref()
    if w is not None:
        w._after_fork()


def _disabled_append(kind: str, use_case: str, record: dict) -> None:
    return None


class LogStore:
    """The decision/observation log writer of one process (thread-safe).

    ``append(kind, use_case, record)`` returns once the record is in the operating system
    (``strict``: on disk). ``close()`` fsyncs and seals the active segments; it is also run
    at interpreter exit, and the store is a context manager.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        durability: Durability = "default",
        fsync_interval_s: float = 0.1,
        max_segment_bytes: int = 64 * 2**20,
        max_segment_age_s: float = 3600.0,
    ) -> None:
        if durability not in DURABILITIES:
            raise ValueError(f"durability must be one of {DURABILITIES}, got {durability!r}")
        if not fsync_interval_s > 0:
            raise ValueError(f"fsync_interval_s must be > 0, got {fsync_interval_s!r}")
        if not 0 < max_segment_bytes <= 2**62:
            raise ValueError(f"max_segment_bytes must be in (0, 2**62], got {max_segment_bytes!r}")
        if not max_segment_age_s > 0:
            raise ValueError(f"max_segment_age_s must be > 0, got {max_segment_age_s!r}")
        self.layout = HomeLayout.of(home)
        self.home = self.layout.root
        self.logs = self.layout.logs
        self.durability = durability
        w = _Writer(
            self.logs,
            durability,
            float(fsync_interval_s),
            int(max_segment_bytes),
            float(max_segment_age_s),
        )
        self._writer = w
        # bound once: the append path is a single call into the writer
        self.append = {
            "default": w.append_default,
            "strict": w.append_strict,
            "disabled": _disabled_append,
        }[durability]
        if durability == "default" and _append is not None:
            # the same append in C; it hands anything unusual (a new segment, a window
            # to extend, a malformed record) to append_default
            self.append = _append.Appender(w, _DUMPS, _OPTS, w.append_default)
        # closes at garbage collection or, at the latest, at interpreter exit
        self._finalizer = weakref.finalize(self, w.close)

    def append(self, kind: str, use_case: str, record: dict) -> None:  # replaced per instance
        """Append one record; ``kind`` is ``"decisions"`` or ``"observations"``."""
        raise NotImplementedError  # pragma: no cover

    def sync(self) -> None:
        """Fsync everything appended so far (whatever the durability mode)."""
        self._writer.sync()

    def seal(self) -> None:
        """Seal the active segments now (the next append opens new ones), so that a
        compaction run next includes everything appended so far."""
        self._writer.seal_all()

    def close(self) -> None:
        """Fsync and seal the active segments. Idempotent."""
        self._finalizer()

    @property
    def closed(self) -> bool:
        return self._writer.closed

    @property
    def stats(self) -> dict[str, int]:
        """Counters: ``appends``, ``fsyncs`` (segment fsyncs), ``sync_rounds``,
        ``dir_fsyncs``, ``segments_opened``, ``segments_sealed``, ``bytes``, ..."""
        return self._writer.stats()

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"LogStore({str(self.home)!r}, durability={self.durability!r})"
