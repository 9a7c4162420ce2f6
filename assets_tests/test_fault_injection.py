"""Fault injection with real components: real files, real processes, a real HTTP server.

- Writers killed with SIGKILL: every id a writer saw acknowledged is in the logs exactly
  once, before and after recovery and compaction.
- A storage failure inside the append (the kernel refusing to grow a segment file, made
  to happen with ``RLIMIT_FSIZE``: a real ``EFBIG`` from ``pwrite``, no mock): the call
  raises an error naming the cause, nothing is acknowledged that is not stored, and a
  retry with the same observation id once the fault clears stores exactly one record, in
  the SDK and over HTTP (a 503 naming the cause, then a 200).
- A killed compaction's temporary files are removed by the next compaction.
"""

from __future__ import annotations

import fcntl
import os
import resource
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import orjson
import polars as pl
import pytest

from looper_pipelines.logs import LogStore, compact, read_decisions, read_observations, recover
from looper_pipelines.logs import segments as sg
from looper_pipelines.logs.compaction import LOCK_NAME
from looper_pipelines.logs.readers import parquet_files, read_segment_payloads
from looper_pipelines.logs.records import (
    DECISIONS,
    ID_COLUMN,
    OBSERVATIONS,
    new_decision_id,
    now_us,
)

from .conftest import REPO, run_python, start_looper_serve, stop_process

UC = "notification_send"
FEATURES = {"tenure_days": 12.5, "sessions_last_7d": 3, "hour_of_day": 20, "platform": "ios"}
CHILD_ENV = {**os.environ, "PYTHONPATH": str(REPO)}


def raw_ids(home: Path, kind: str) -> Counter[str]:
    """How many times each id is stored (segments and Parquet, not deduplicated: the
    readers keep the first observation of an id, so they would hide a second record)."""
    logs = home / "logs"
    payloads, stems = read_segment_payloads(logs, kind, UC)
    idcol = ID_COLUMN[kind]
    ids = Counter(orjson.loads(p)[idcol] for p in payloads)
    skip = {sg.parquet_name(s) for s in stems}
    for f in parquet_files(logs, kind, UC):
        if f.name not in skip:
            ids.update(pl.read_parquet(f, columns=[idcol])[idcol].to_list())
    return ids


def assert_exactly_once(home: Path, kind: str, witnessed: set[str]) -> None:
    counts = raw_ids(home, kind)
    missing = witnessed - set(counts)
    assert not missing, f"{len(missing)} acknowledged {kind} lost, e.g. {sorted(missing)[:3]}"
    twice = {i: n for i, n in counts.items() if n > 1}
    assert not twice, f"{kind} stored more than once: {list(twice.items())[:3]}"
    read = read_decisions if kind == DECISIONS else read_observations
    assert witnessed <= set(read(home, UC)[ID_COLUMN[kind]].to_list())


# -- SIGKILL of concurrent writers -----------------------------------------------------------
# A writer: decisions and observations through the SDK; after each acknowledgement it
# writes "<kind> <id>" to its witness file (unbuffered: on disk as soon as written). Every
# observation is logged twice with the same id (a retry): the second call must not store.
WITNESS_CHILD = r"""
import os, sys
from looper_pipelines.client import LooperClient

home, witness = sys.argv[1], sys.argv[2]
client = LooperClient.local(home)
fd = os.open(witness, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
features = {"tenure_days": 12.5, "sessions_last_7d": 3, "hour_of_day": 20, "platform": "ios"}
i = 0
while True:
    d = client.get_decision("notification_send", f"{os.getpid()}-{i}", features)
    os.write(fd, b"d " + d.decision_id.encode() + b"\n")
    oid = f"{os.getpid()}-obs-{i}"
    for _ in range(2):
        assert client.log_observation(d.decision_id, "click", i % 2, oid) == oid
        os.write(fd, b"o " + oid.encode() + b"\n")
    i += 1
"""


def read_witness(path: Path) -> tuple[set[str], set[str]]:
    """(decision ids, observation ids) acknowledged, from complete witness lines only."""
    decisions: set[str] = set()
    observations: set[str] = set()
    for line in path.read_bytes().split(b"\n")[:-1]:
        kind, _, ident = line.decode().partition(" ")
        (decisions if kind == "d" else observations).add(ident)
    return decisions, observations


def test_sigkilled_writers_lose_no_acknowledged_record(tmp_path: Path) -> None:
    """An acknowledgement (get_decision or log_observation returning) means the record is
    stored: SIGKILL of several writer processes mid-stream loses none of them, and none is
    stored twice, before recovery, after it and after compaction."""
    home, writers, min_acks = tmp_path / "home", 3, 400
    home.mkdir()
    witnesses = [tmp_path / f"witness-{k}" for k in range(writers)]
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WITNESS_CHILD, str(home), str(w)],
            env=CHILD_ENV,
            stderr=subprocess.PIPE,
        )
        for w in witnesses
    ]
    try:
        deadline = time.monotonic() + 60
        while not all(w.exists() and w.stat().st_size > min_acks * 40 for w in witnesses):
            for p in procs:
                assert p.poll() is None, p.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, "the writers were too slow"
            time.sleep(0.02)
    finally:
        for p in procs:
            p.send_signal(signal.SIGKILL)
        for p in procs:
            p.wait()
    assert all(p.returncode == -signal.SIGKILL for p in procs)
    decisions: set[str] = set()
    observations: set[str] = set()
    for w in witnesses:
        d, o = read_witness(w)
        decisions |= d
        observations |= o
    assert (
        len(decisions) >= writers * min_acks // 4 and len(observations) >= len(decisions) - writers
    )

    for kind, ids in ((DECISIONS, decisions), (OBSERVATIONS, observations)):
        assert_exactly_once(home, kind, ids)  # the dead writers' open segments, as they are
    report = recover(home)
    assert report["segments_recovered"] == 2 * writers and report["live_segments"] == 0
    for kind, ids in ((DECISIONS, decisions), (OBSERVATIONS, observations)):
        assert_exactly_once(home, kind, ids)
    compact(home)
    assert not list((home / "logs").glob("*/_segments/*/*.*"))  # all in Parquet now
    for kind, ids in ((DECISIONS, decisions), (OBSERVATIONS, observations)):
        assert_exactly_once(home, kind, ids)


# -- a storage failure inside the append -----------------------------------------------------
FSIZE_LIMIT = 64 * 1024  # bytes a segment file may grow to while the fault is on

# Logs through the SDK with files limited to FSIZE_LIMIT bytes (RLIMIT_FSIZE: the kernel
# refuses to grow a segment past it with EFBIG) until an append fails; retries while the
# fault is on, lifts the limit, retries again. Prints a JSON report.
FULL_DISK_CHILD = r"""
import json, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG
soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
limit = int(sys.argv[3])
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
from looper_pipelines.client import LooperClient

home, durability = sys.argv[1], sys.argv[2]
features = {"tenure_days": 12.5, "sessions_last_7d": 3, "hour_of_day": 20, "platform": "ios"}
out = {"decisions": [], "observations": [], "errors": []}
client = LooperClient.local(home, log_durability=durability)

def attempt(kind, call):
    try:
        ident = call()
    except Exception as e:
        out["errors"].append([kind, type(e).__name__, str(e)])
        return None
    out[kind].append(ident)
    return ident

decide = lambda: client.get_decision("notification_send", "u", features).decision_id
d = decide()
out["decisions"].append(d)
while attempt("decisions", decide) is not None:
    assert len(out["decisions"]) < 10 * limit // 100, "the limit never bit"
observe = lambda oid: lambda: client.log_observation(d, "click", 1, oid)
i = 0
while attempt("observations", observe(f"o{i}")) is not None:
    i += 1
failed = f"o{i}"
out["failed"] = failed
out["retry_during_fault"] = attempt("observations", observe(failed))  # still failing
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # the fault clears
out["retry_after_fault"] = attempt("observations", observe(failed))
out["retry_again"] = attempt("observations", observe(failed))  # acknowledged, not stored again
out["decision_after_fault"] = attempt("decisions", decide)
client.close()
print(json.dumps(out))
"""


@pytest.mark.parametrize("durability", ["default", "strict"])  # the C append; pwrite
def test_storage_failure_acknowledges_nothing_and_a_retry_stores_once(
    tmp_path: Path, durability: str
) -> None:
    """A failed append raises an error naming the cause and acknowledges nothing; a retry
    with the same observation id after the fault clears stores exactly one record, and
    further retries are acknowledged without storing another."""
    r = run_python(FULL_DISK_CHILD, str(tmp_path), durability, str(FSIZE_LIMIT), timeout=120)
    assert r.returncode == 0, r.stderr[-3000:]
    out = orjson.loads(r.stdout)
    kinds = [e[0] for e in out["errors"]]
    assert kinds == ["decisions", "observations", "observations"], out["errors"]
    for _, name, message in out["errors"]:
        assert name == "OSError" and "File too large" in message and "not logged" in message
        assert "\n" not in message
    failed = out["failed"]
    assert out["retry_during_fault"] is None  # not acknowledged: it was not stored
    assert out["retry_after_fault"] == out["retry_again"] == failed
    assert out["decision_after_fault"] is not None
    acked_obs = set(out["observations"])
    assert failed in acked_obs and len(out["observations"]) == len(acked_obs) + 1
    decisions = raw_ids(tmp_path, DECISIONS)
    observations = raw_ids(tmp_path, OBSERVATIONS)
    assert set(decisions) == set(out["decisions"]) and set(decisions.values()) == {1}
    assert set(observations) == acked_obs and set(observations.values()) == {1}
    compact(tmp_path)
    assert raw_ids(tmp_path, OBSERVATIONS) == observations
    assert raw_ids(tmp_path, DECISIONS) == decisions


def _limit_file_size() -> None:  # runs in the server process before exec
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
    resource.setrlimit(resource.RLIMIT_FSIZE, (FSIZE_LIMIT, hard))


def test_storage_failure_over_http_is_a_503_and_a_retry_stores_once(tmp_path: Path) -> None:
    """Over HTTP a log that cannot store the record answers 503 naming the cause (never a
    200 for an observation that was not stored); the retry with the same observation id
    once the fault clears is a 200 and stores exactly one record."""
    proc, url = start_looper_serve(tmp_path, "--log-level", "warning", env=CHILD_ENV, preexec_fn=_limit_file_size)
    try:
        with httpx.Client(base_url=url, timeout=10) as http:
            r = http.post(
                "/v1/decisions", json={"use_case": UC, "subject_id": "u", "features": FEATURES}
            )
            assert r.status_code == 200, r.text
            decision_id = r.json()["decision_id"]
            acked: list[str] = []
            for i in range(2000):
                body = {
                    "decision_id": decision_id,
                    "name": "click",
                    "value": 1,
                    "observation_id": f"o{i}",
                }
                r = http.post("/v1/observations", json=body)
                if r.status_code != 200:
                    break
                acked.append(r.json()["observation_id"])
            assert r.status_code == 503, r.text
            error = r.json()["error"]
            assert error["field"] == "storage" and "File too large" in error["message"], error
            assert "\n" not in error["message"] and len(error["message"]) < 500
            again = http.post("/v1/observations", json=body)
            assert again.status_code == 503, again.text  # the fault is still on
            decided = [decision_id]
            for i in range(2000):  # decisions, until their segment cannot grow either
                d = {"use_case": UC, "subject_id": f"s{i}", "features": FEATURES}
                r = http.post("/v1/decisions", json=d)
                if r.status_code != 200:
                    break
                decided.append(r.json()["decision_id"])
            assert r.status_code == 503 and r.json()["error"]["field"] == "storage", r.text
            hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
            resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (hard, hard))  # it clears
            for _ in range(2):
                r = http.post("/v1/observations", json=body)
                assert r.status_code == 200, r.text
                acked.append(r.json()["observation_id"])
            r = http.post("/v1/decisions", json=d)
            assert r.status_code == 200, r.text
            decided.append(r.json()["decision_id"])
            assert http.get("/healthz").status_code == 200
    finally:
        out = stop_process(proc)
    assert "storage error" in out
    counts = raw_ids(tmp_path, OBSERVATIONS)
    assert set(counts) == set(acked) and set(counts.values()) == {1}
    decisions = raw_ids(tmp_path, DECISIONS)
    assert set(decisions) == set(decided) and set(decisions.values()) == {1}
    assert counts[body["observation_id"]] == 1


# -- a killed compaction ---------------------------------------------------------------------
def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _log_decisions(home: Path, n: int) -> None:
    """``n`` decision records in one sealed segment (through the log writer itself)."""
    with LogStore(home) as store:
        for i in range(n):
            ts = now_us()
            store.append(DECISIONS, UC, {
                "decision_id": new_decision_id(UC, ts), "use_case": UC, "subject_id": f"s{i}",
                "timestamp": ts, "features": FEATURES, "action": "send", "action_index": 1,
                "propensity": 0.9, "scores": {}, "explored": False,
            })  # fmt: skip


def _kill_compaction_while_it_writes(home: Path) -> list[Path]:
    """Start ``compact`` in a process, SIGKILL it while a Parquet temporary file exists,
    and return the temporary files it left (a few tries: the window is a write)."""
    base = sg.partition_dir(home / "logs", DECISIONS, UC)
    code = "import sys\nfrom looper_pipelines.logs import compact\ncompact(sys.argv[1])"
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-c", code, str(home)], env=CHILD_ENV)
        try:
            while proc.poll() is None:
                if list(base.glob("date=*/.*.tmp")):
                    proc.send_signal(signal.SIGSTOP)  # frozen mid-write, then killed
                    left = list(base.glob("date=*/.*.tmp"))
                    proc.send_signal(signal.SIGKILL if left else signal.SIGCONT)
                    if left:
                        proc.wait()
                        return left
                time.sleep(0.001)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        _log_decisions(home, 60_000)  # it finished first: more to write next time
    pytest.fail("never caught the compaction writing Parquet")


def test_next_compaction_removes_what_a_killed_compaction_left(tmp_path: Path) -> None:
    """A compaction killed (SIGKILL) while writing Parquet leaves a temporary file; the
    next compaction, which holds the compaction lock so that no other compaction is
    writing, removes it and compacts every record exactly once. A quarantine temporary
    file of a dead process is removed too, one of a live process is left alone, and
    nothing is removed while another compaction holds the lock."""
    _log_decisions(tmp_path, 60_000)
    left = _kill_compaction_while_it_writes(tmp_path)
    logs = tmp_path / "logs"
    dead = _dead_pid()
    qdir = sg.quarantine_dir(logs, DECISIONS, UC)
    qdir.mkdir(parents=True)
    # what a process killed while writing a quarantine file leaves (recover writes them
    # without the compaction lock: only a dead writer's old file is stale)
    stale_q = qdir / f".20260101T000000000000Z-{dead}-abcd-000001.torn.{dead}.tmp"
    live_q = qdir / f".20260101T000000000000Z-1-abcd-000002.torn.{os.getpid()}.tmp"
    for f in (stale_q, live_q):
        f.write_bytes(b"partial")
        os.utime(f, (time.time() - 3600, time.time() - 3600))
    before = read_decisions(tmp_path, UC)  # the killed run's Parquet never got its name

    # another compaction holds the lock: a compaction started now waits, removing nothing
    fd = os.open(logs / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)
    reports: list[dict] = []
    waiter = threading.Thread(target=lambda: reports.append(compact(tmp_path)))
    waiter.start()
    time.sleep(0.3)
    assert all(f.exists() for f in left) and stale_q.exists() and not reports
    os.close(fd)
    waiter.join(timeout=120)
    assert reports and not any(f.exists() for f in left) and not stale_q.exists()
    assert reports[0]["temp_files_removed"] == len(left) + 1
    assert live_q.exists()  # its writer (this process) is alive
    after = read_decisions(tmp_path, UC)
    assert after.height == before.height and after["decision_id"].n_unique() == after.height
    assert not list(logs.glob("*/use_case=*/date=*/.*"))
