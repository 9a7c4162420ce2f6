"""Crash and multi-process tests of the log store: SIGKILL under load, several writers."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import orjson
import pytest

from looper_pipelines.logs import compact, read_decisions, read_observations, recover
from looper_pipelines.logs import segments as sg
from looper_pipelines.logs.records import DECISIONS

UC = "notification_send"

# A child that logs from 4 threads and reports each id on stdout once append returned.
LOGSTORE_CHILD = r"""
import os, sys, threading
from looper_pipelines.logs import LogStore
from looper_pipelines.logs.records import new_decision_id, now_us

store = LogStore(sys.argv[1], max_segment_bytes=20_000)

def work(t):
    i = 0
    while True:
        ts = now_us()
        r = {"decision_id": new_decision_id("notification_send", ts), "use_case": "notification_send",
             "subject_id": f"t{t}-{i}", "timestamp": ts, "features": {"tenure_days": 10.0, "hour_of_day": 3},
             "action": "send", "action_index": 1, "propensity": 0.9, "scores": {"click": 0.5},
             "explored": False}
        store.append("decisions", "notification_send", r)
        os.write(1, (r["decision_id"] + "\n").encode())  # acknowledged
        i += 1

for t in range(4):
    threading.Thread(target=work, args=(t,), daemon=True).start()
threading.Event().wait()
"""

# The same through the public SDK.
CLIENT_CHILD = r"""
import os, sys, threading
from looper_pipelines.client import LooperClient

client = LooperClient.local(sys.argv[1])

def work(t):
    i = 0
    while True:
        d = client.get_decision("notification_send", f"t{t}-{i}", {"tenure_days": 10.0, "hour_of_day": 3})
        os.write(1, (d.decision_id + "\n").encode())  # acknowledged
        i += 1

for t in range(4):
    threading.Thread(target=work, args=(t,), daemon=True).start()
threading.Event().wait()
"""


def _kill_under_load(code: str, home: Path, min_acked: int, ready: Callable[[], bool] = lambda: True) -> set[str]:
    """Run ``code`` in a child, SIGKILL it once ``min_acked`` ids were acknowledged and
    ``ready()`` holds, and return every id it acknowledged."""
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(home)], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    acked: list[bytes] = []
    deadline = time.monotonic() + 60
    try:
        assert proc.stdout is not None
        while len(acked) < min_acked or not ready():
            line = proc.stdout.readline()
            if not line:
                err = proc.stderr.read().decode() if proc.stderr else ""
                pytest.fail(f"child exited early ({proc.wait()}): {err[-2000:]}")
            acked.append(line)
            assert time.monotonic() < deadline, "child too slow"
        os.kill(proc.pid, signal.SIGKILL)
        rest = proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    chunks = b"".join(acked) + rest
    return {x.decode() for x in chunks.split(b"\n")[:-1]}  # complete lines only


def _dead_open_segments(home: Path) -> list[Path]:
    return sorted(sg.segment_dir(home / "logs", DECISIONS, UC).glob("*.open"))


def _check_crash_recovery(home: Path, acked: set[str]) -> None:
    opens = _dead_open_segments(home)
    assert opens, "the killed writer left no active segment"
    # make the tail torn for sure, as a write cut by the kill would leave it
    torn = sg.encode_line(orjson.dumps({"decision_id": "torn"}))[:25]
    with open(opens[-1], "ab") as f:
        f.write(torn)
    # readers work before recovery: the live-segment path skips the incomplete line
    before = read_decisions(home, UC)["decision_id"]
    assert before.n_unique() == before.len()
    assert acked <= set(before.to_list())

    report = recover(home)
    assert report["segments_recovered"] == len(opens)
    assert report["bytes_dropped"] >= len(torn)
    assert report["live_segments"] == 0
    assert not _dead_open_segments(home)
    after = read_decisions(home, UC)["decision_id"]
    assert after.n_unique() == after.len()
    assert acked <= set(after.to_list()), f"lost {len(acked - set(after.to_list()))} acknowledged"
    assert set(after.to_list()) == set(before.to_list())

    compact(home)
    final = read_decisions(home, UC)["decision_id"]
    assert final.len() == after.len() and set(final.to_list()) == set(after.to_list())
    assert not list(sg.segment_dir(home / "logs", DECISIONS, UC).glob("*.*"))


def test_crash_sigkill_under_load_through_logstore(tmp_path: Path) -> None:
    # small segments: the kill finds sealed segments (sealed by the writer's background
    # thread, which a loaded machine may delay) as well as active ones
    def sealed() -> bool:
        return any(sg.segment_dir(tmp_path / "logs", DECISIONS, UC).glob("*.seg"))

    acked = _kill_under_load(LOGSTORE_CHILD, tmp_path, min_acked=3000, ready=sealed)
    assert len(acked) >= 3000
    assert sealed()
    _check_crash_recovery(tmp_path, acked)


@pytest.mark.skipif(
    importlib.util.find_spec("looper_pipelines.client") is None, reason="SDK not available"
)
def test_crash_sigkill_under_load_through_client_sdk(tmp_path: Path) -> None:
    acked = _kill_under_load(CLIENT_CHILD, tmp_path, min_acked=1500)
    assert len(acked) >= 1500
    _check_crash_recovery(tmp_path, acked)


# A writer process: N decisions with known subject ids, and observations whose ids are the
# same in every process (observations are idempotent by id).
MULTI_CHILD = r"""
import sys
from looper_pipelines.logs import LogStore
from looper_pipelines.logs.records import new_decision_id, now_us

home, k, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
sys.stdin.readline()  # start together
with LogStore(home, max_segment_bytes=40_000) as store:
    for i in range(n):
        ts = now_us()
        store.append("decisions", "notification_send", {
            "decision_id": new_decision_id("notification_send", ts), "use_case": "notification_send",
            "subject_id": f"p{k}-{i}", "timestamp": ts, "features": {"tenure_days": float(i)},
            "action": "send", "action_index": 1, "propensity": 1.0, "scores": {}, "explored": False})
        if i % 10 == 0:
            store.append("observations", "notification_send", {
                "observation_id": f"obs-{i}", "decision_id": "d", "use_case": "notification_send",
                "name": "click", "value": 1.0, "timestamp": ts})
"""


def test_several_processes_log_to_one_home_while_compaction_runs(tmp_path: Path) -> None:
    procs, n = 4, 3000
    children = [
        subprocess.Popen(
            [sys.executable, "-c", MULTI_CHILD, str(tmp_path), str(k), str(n)],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for k in range(procs)
    ]
    for c in children:
        c.stdin.write(b"go\n")  # type: ignore[union-attr]
        c.stdin.flush()  # type: ignore[union-attr]
    compactions = 0
    while any(c.poll() is None for c in children):
        compact(tmp_path)
        compactions += 1
        got = read_decisions(tmp_path, UC)["decision_id"]
        assert got.n_unique() == got.len()
    for c in children:
        _, err = c.communicate()
        assert c.returncode == 0, err.decode()[-2000:]
    assert compactions > 0
    before = read_decisions(tmp_path, UC)
    compact(tmp_path)
    df = read_decisions(tmp_path, UC)
    assert df.height == procs * n
    assert df["decision_id"].n_unique() == procs * n
    assert set(df["subject_id"].to_list()) == {f"p{k}-{i}" for k in range(procs) for i in range(n)}
    assert df.equals(before)
    obs = read_observations(tmp_path, UC)
    assert sorted(obs["observation_id"].to_list()) == sorted(f"obs-{i}" for i in range(0, n, 10))
    # distinct segment names per process: pid and a random token in every stem
    files = (tmp_path / "logs" / DECISIONS).glob("use_case=*/date=*/part-*.parquet")
    pids = {f.name.split("-")[2] for f in files}  # part-<time>-<pid>-<token>-<seq>.parquet
    assert len(pids) == procs
