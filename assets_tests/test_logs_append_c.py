"""The log writer's append in C (``looper_pipelines/logs/_append.c``) against its Python
twin: same bytes on disk, same errors, same behaviour without the extension."""

from __future__ import annotations

import os
import random
import threading
import zlib
from collections import OrderedDict
from pathlib import Path

import pytest

from assets_tests.conftest import run_python
from looper_pipelines.logs import LogStore, read_decisions, recover, writer
from looper_pipelines.logs import segments as sg
from looper_pipelines.logs.records import DECISIONS, OBSERVATIONS

from .test_logs_store import UC, decision, observation

needs_c = pytest.mark.skipif(writer._append is None, reason="the C append is not built")


def _segment_bytes(home: Path, kind: str = DECISIONS) -> list[bytes]:
    files = sorted(sg.segment_dir(home / "logs", kind, UC).glob("*.seg"))
    # stems differ between stores (process token); their sequence numbers order them
    return [f.read_bytes() for f in sorted(files, key=lambda p: p.name.split("-")[-1])]


@needs_c
def test_crc32_is_zlibs() -> None:
    rng = random.Random(7)
    data = bytes(rng.getrandbits(8) for _ in range(70_000))
    for n in [*range(0, 200), 255, 256, 521, 1023, 4096, 65_537]:
        start = rng.randrange(0, 16)  # unaligned starts too
        chunk = memoryview(data)[start : start + n]
        assert writer._append.crc32(chunk) == zlib.crc32(chunk), n


@needs_c
def test_c_and_python_appends_write_the_same_segments(tmp_path: Path) -> None:
    recs = [decision(i, ts=1_700_000_000_000_000 + i) for i in range(3000)]
    recs[1500]["features"] = {"blob": "y" * (3 << 20)}  # longer than any mapped window
    recs[10]["features"] = {"text": "é \u2028 \"quoted\" \\ \n"}
    homes = {"c": tmp_path / "c", "py": tmp_path / "py"}
    for how, home in homes.items():
        with LogStore(home, max_segment_bytes=256 << 10) as store:
            append = store.append if how == "c" else store._writer.append_default
            assert type(append).__name__ == ("Appender" if how == "c" else "method")
            for r in recs:
                append(DECISIONS, UC, r)
            append(OBSERVATIONS, UC, observation("o1", recs[0]["decision_id"], ts=5))
            stats = store.stats
        assert stats["appends"] == len(recs) + 1
    c, py = _segment_bytes(homes["c"]), _segment_bytes(homes["py"])
    assert len(c) >= 5 and c == py  # rotated the same way, byte for byte
    assert _segment_bytes(homes["c"], OBSERVATIONS) == _segment_bytes(homes["py"], OBSERVATIONS)
    df = read_decisions(homes["c"], UC)
    assert df["subject_id"].to_list() == [r["subject_id"] for r in recs]
    assert recover(homes["c"])["bytes_dropped"] == 0


@needs_c
def test_the_c_append_takes_what_python_takes_and_refuses_what_it_refuses(tmp_path: Path) -> None:
    with LogStore(tmp_path) as store:
        assert type(store.append).__name__ == "Appender"
        kind = "".join(["deci", "sions"])  # equal, not the same object
        store.append(kind, UC, decision(0))
        store.append(DECISIONS, UC, OrderedDict(decision(1)))  # a dict subclass: Python's path
        store.append(DECISIONS, UC, record=decision(2))  # keywords: Python's path
        with pytest.raises(ValueError, match="cannot encode"):
            store.append(DECISIONS, UC, {**decision(3), "features": {1: 2.0}})
        with pytest.raises(ValueError, match="timestamp"):
            store.append(DECISIONS, UC, {**decision(4), "timestamp": 1.5})
        with pytest.raises(ValueError, match="observation_id"):
            store.append(OBSERVATIONS, UC, decision(5))
        with pytest.raises(TypeError):
            store.append(DECISIONS, UC)  # type: ignore[call-arg]
        store.append(DECISIONS, UC, decision(6))
    assert read_decisions(tmp_path, UC)["subject_id"].to_list() == ["u0", "u1", "u2", "u6"]
    assert recover(tmp_path)["bytes_dropped"] == 0


def test_threads_appending_at_once_lose_and_duplicate_nothing(tmp_path: Path) -> None:
    per_thread = 2000

    with LogStore(tmp_path, max_segment_bytes=128 << 10) as store:

        def work(t: int) -> None:
            for i in range(per_thread):
                store.append(DECISIONS, UC, decision(t * per_thread + i))

        threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    df = read_decisions(tmp_path, UC)
    assert df.height == 8 * per_thread
    assert df["decision_id"].n_unique() == 8 * per_thread
    assert recover(tmp_path)["bytes_dropped"] == 0


_WITHOUT_EXTENSION = """
import sys
sys.modules["looper_pipelines.logs._append"] = None  # as if it had not been built
from looper_pipelines.logs import LogStore, read_decisions, recover, writer
assert writer._append is None and writer._Segment.__mro__[1] is object
from assets_tests.test_logs_store import UC, decision
home = sys.argv[1]
for durability in ("default", "strict"):
    with LogStore(home, durability=durability, max_segment_bytes=64 << 10) as store:
        assert type(store.append).__name__ == "method"
        for i in range(1000):
            store.append("decisions", UC, decision(i))
assert read_decisions(home, UC).height == 2000
assert recover(home)["bytes_dropped"] == 0
print("ok")
"""


def test_the_writer_works_without_the_extension(tmp_path: Path) -> None:
    out = run_python(_WITHOUT_EXTENSION, str(tmp_path))
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


@needs_c
def test_the_writer_lock_excludes_other_threads() -> None:
    lock = writer._append.Lock()
    assert lock.acquire() is True and lock.locked()
    assert lock.acquire(blocking=False) is False
    got: list[bool] = []
    t = threading.Thread(target=lambda: got.append(lock.acquire()))
    t.start()
    t.join(0.2)
    assert t.is_alive() and not got  # waits, without holding the GIL
    lock.release()
    t.join(5)
    assert got == [True] and lock.locked()
    lock.release()
    with pytest.raises(RuntimeError, match="unlocked"):
        lock.release()
    with lock:
        assert lock.locked()
    assert not lock.locked()


@needs_c
def test_a_wait_for_the_writer_lock_times_out_and_lets_signal_handlers_run() -> None:
    import signal
    import time

    lock = writer._append.Lock()
    lock.acquire()
    t0 = time.monotonic()
    assert lock.acquire(timeout=0.1) is False and time.monotonic() - t0 >= 0.09
    with pytest.raises(ValueError, match="non-blocking"):
        lock.acquire(blocking=False, timeout=1)

    class Interrupted(Exception):
        pass

    def handler(signum: int, frame: object) -> None:
        raise Interrupted

    old = signal.signal(signal.SIGUSR1, handler)
    try:
        timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGUSR1))
        timer.start()
        with pytest.raises(Interrupted):
            lock.acquire()  # held by this very thread: only the handler ends the wait
        timer.join()
    finally:
        signal.signal(signal.SIGUSR1, old)
    lock.release()
    assert not lock.locked()
