"""The append-only log store: round trips, rotation, compaction, recovery, bad input."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import orjson
import polars as pl
import pytest

from looper_pipelines.logs import (
    LogStore,
    compact,
    read_decisions,
    read_observations,
    recover,
)
from looper_pipelines.logs import segments as sg
from looper_pipelines.logs.records import (
    DECISION_SCHEMA,
    DECISIONS,
    OBSERVATION_SCHEMA,
    OBSERVATIONS,
    new_decision_id,
    now_us,
)

UC = "notification_send"
DAY_US = 86_400 * 1_000_000


def decision(i: int, ts: int | None = None, use_case: str = UC) -> dict:
    ts = now_us() if ts is None else ts
    return {
        "decision_id": new_decision_id(use_case, ts),
        "use_case": use_case,
        "subject_id": f"u{i}",
        "timestamp": ts,
        "features": {"tenure_days": 10.0 + i, "hour_of_day": i % 24, "platform": "ios"},
        "action": "send" if i % 2 else "dont_send",
        "action_index": i % 2,
        "propensity": 0.9,
        "scores": {"click": 0.25, "unsubscribe": 0.01},
        "model_version": "m1",
        "blueprint_version": "b1",
        "policy_version": "p1",
        "explored": i % 7 == 0,
        "experiment_arm": None,
        "assignment_probability": None,
    }


def observation(oid: str, decision_id: str, value: float = 1.0, ts: int | None = None) -> dict:
    return {
        "observation_id": oid,
        "decision_id": decision_id,
        "use_case": UC,
        "name": "click",
        "value": value,
        "timestamp": now_us() if ts is None else ts,
    }


def seg_files(home: Path, kind: str = DECISIONS, use_case: str = UC) -> list[Path]:
    return sorted(sg.segment_dir(home / "logs", kind, use_case).glob("*.*"))


def parquet_files(home: Path, kind: str = DECISIONS) -> list[Path]:
    return sorted((home / "logs" / kind).glob("use_case=*/date=*/*.parquet"))


# -- round trips ---------------------------------------------------------------------------
def test_round_trip_through_segments(tmp_path: Path) -> None:
    recs = [decision(i) for i in range(50)]
    with LogStore(tmp_path) as store:
        for r in recs:
            store.append(DECISIONS, UC, r)
        store.append(OBSERVATIONS, UC, observation("o1", recs[0]["decision_id"], 1.0))
        store.append(OBSERVATIONS, UC, observation("o2", recs[1]["decision_id"], 0.0))
        store.append(OBSERVATIONS, UC, observation("o1", recs[0]["decision_id"], 0.0))  # retry
        # readers see the active segments of a live writer
        live = read_decisions(tmp_path, UC)
        assert live.height == 50
    df = read_decisions(tmp_path, UC)
    assert df.schema == pl.Schema(DECISION_SCHEMA)
    assert df["decision_id"].to_list() == [r["decision_id"] for r in recs]
    assert df["timestamp"].is_sorted()
    row = df.row(3, named=True)
    assert orjson.loads(row["features"]) == recs[3]["features"]
    assert orjson.loads(row["scores"]) == recs[3]["scores"]
    assert row["subject_id"] == "u3" and row["action_index"] == 1 and row["explored"] is False
    assert row["timestamp"].timestamp() * 1e6 == pytest.approx(recs[3]["timestamp"], abs=1)

    obs = read_observations(tmp_path, UC)
    assert obs.schema == pl.Schema(OBSERVATION_SCHEMA)
    assert sorted(obs["observation_id"].to_list()) == ["o1", "o2"]  # idempotent by id
    assert obs.filter(pl.col("observation_id") == "o1")["value"].item() == 1.0  # first kept
    assert not list(sg.segment_dir(tmp_path / "logs", DECISIONS, UC).glob("*.open"))


def test_empty_and_unknown_use_case(tmp_path: Path) -> None:
    assert read_decisions(tmp_path, UC).schema == pl.Schema(DECISION_SCHEMA)
    assert read_observations(tmp_path, "item_recommendation").height == 0
    with pytest.raises(ValueError, match="use case"):
        read_decisions(tmp_path, "../etc")


def test_use_cases_and_kinds_are_separate(tmp_path: Path) -> None:
    with LogStore(tmp_path) as store:
        store.append(DECISIONS, UC, decision(1))
        store.append(DECISIONS, "item_recommendation", decision(2, use_case="item_recommendation"))
    assert read_decisions(tmp_path, UC)["subject_id"].to_list() == ["u1"]
    assert read_decisions(tmp_path, "item_recommendation")["subject_id"].to_list() == ["u2"]
    assert read_observations(tmp_path, UC).height == 0


def test_round_trip_through_compaction(tmp_path: Path) -> None:
    day0 = 1_700_000_000_000_000 - 1_700_000_000_000_000 % DAY_US  # 2023-11-14 00:00 UTC
    recs = [decision(i, ts=day0 + i * (DAY_US // 40)) for i in range(100)]  # spans 3 dates
    with LogStore(tmp_path, max_segment_bytes=8_000) as store:
        for r in recs:
            store.append(DECISIONS, UC, r)
        for i in range(30):
            store.append(OBSERVATIONS, UC, observation(f"o{i % 20}", recs[i]["decision_id"]))
    before_d = read_decisions(tmp_path, UC)
    before_o = read_observations(tmp_path, UC)
    n_segments = len(seg_files(tmp_path)) + len(seg_files(tmp_path, OBSERVATIONS))

    report = compact(tmp_path)
    assert report["segments_compacted"] == n_segments
    assert report["rows"] == 130
    assert report["files_written"] >= n_segments
    assert seg_files(tmp_path) == [] and seg_files(tmp_path, OBSERVATIONS) == []
    files = parquet_files(tmp_path)
    assert {f.parent.name for f in files} == {
        "date=2023-11-14",
        "date=2023-11-15",
        "date=2023-11-16",
    }
    assert all(f.name.startswith("part-") for f in files)
    assert pl.read_parquet(files[0]).schema == pl.Schema(DECISION_SCHEMA)

    after_d = read_decisions(tmp_path, UC)
    assert after_d.equals(before_d)
    assert read_observations(tmp_path, UC).equals(before_o)
    assert before_o.height == 20

    # idempotent: a second run finds nothing to do and changes nothing
    again = compact(tmp_path)
    assert again["segments_compacted"] == 0 and again["files_written"] == 0
    assert read_decisions(tmp_path, UC).equals(before_d)

    glob = f"{tmp_path}/logs/decisions/use_case=*/date=*/*.parquet"
    [(n, ucs, dates)] = duckdb.sql(
        f"select count(*), count(distinct use_case), count(distinct date) "
        f"from read_parquet('{glob}', hive_partitioning=true)"
    ).fetchall()
    assert (n, ucs, dates) == (100, 1, 3)


def test_compaction_rerun_after_crash_is_idempotent(tmp_path: Path) -> None:
    with LogStore(tmp_path) as store:
        for i in range(20):
            store.append(DECISIONS, UC, decision(i))
    [seg] = seg_files(tmp_path)
    saved = tmp_path / "saved.seg"
    shutil.copy(seg, saved)
    compact(tmp_path)
    # as if compaction had crashed after writing Parquet but before removing the segment
    shutil.copy(saved, seg)
    assert read_decisions(tmp_path, UC).height == 20  # the Parquet of a read segment is skipped
    report = compact(tmp_path)
    assert report["segments_compacted"] == 1
    assert len(parquet_files(tmp_path)) == 1
    df = read_decisions(tmp_path, UC)
    assert df.height == 20 and df["decision_id"].n_unique() == 20


# -- rotation ------------------------------------------------------------------------------
def test_rotation_by_size(tmp_path: Path) -> None:
    with LogStore(tmp_path, max_segment_bytes=4_000) as store:
        for i in range(60):
            store.append(DECISIONS, UC, decision(i))
        assert store.stats["segments_opened"] > 3
    files = seg_files(tmp_path)
    assert len(files) > 3 and all(f.suffix == ".seg" for f in files)
    line = len(sg.encode_line(orjson.dumps(decision(0))))
    for f in files[:-1]:
        assert 4_000 <= f.stat().st_size < 4_000 + 2 * line
    assert read_decisions(tmp_path, UC).height == 60


def test_rotation_by_age(tmp_path: Path) -> None:
    store = LogStore(tmp_path, max_segment_age_s=0.3, fsync_interval_s=0.05)
    store.append(DECISIONS, UC, decision(0))
    assert [f.suffix for f in seg_files(tmp_path)] == [".open"]
    # an idle segment past its age is sealed by the background thread
    deadline = time.monotonic() + 5
    while [f.suffix for f in seg_files(tmp_path)] != [".seg"]:
        assert time.monotonic() < deadline, seg_files(tmp_path)
        time.sleep(0.05)
    store.append(DECISIONS, UC, decision(1))
    assert sorted(f.suffix for f in seg_files(tmp_path)) == [".open", ".seg"]
    store.close()
    assert [f.suffix for f in seg_files(tmp_path)] == [".seg", ".seg"]
    assert read_decisions(tmp_path, UC).height == 2


# -- durability modes ----------------------------------------------------------------------
def test_strict_mode_group_commit_from_8_threads(tmp_path: Path) -> None:
    store = LogStore(tmp_path, durability="strict")
    per_thread = 150
    ids: list[list[str]] = [[] for _ in range(8)]
    start = threading.Barrier(8)

    def work(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            r = decision(t * 1000 + i)
            store.append(DECISIONS, UC, r)
            ids[t].append(r["decision_id"])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stats = store.stats
    # every append returned after an fsync covering it: nothing is left unsynced
    w = store._writer
    assert w.durable_seq == w.seq == 8 * per_thread
    assert all(s.synced == s.size for s in w.active.values())
    assert stats["appends"] == 8 * per_thread
    assert 0 < stats["fsyncs"] < stats["appends"] / 2, stats
    store.close()
    got = read_decisions(tmp_path, UC)["decision_id"]
    assert got.n_unique() == got.len() == 8 * per_thread
    assert set(got.to_list()) == {i for t in ids for i in t}


def test_default_mode_background_fsync(tmp_path: Path) -> None:
    with LogStore(tmp_path, fsync_interval_s=0.02) as store:
        store.append(DECISIONS, UC, decision(0))
        deadline = time.monotonic() + 5
        while store.stats["fsyncs"] == 0:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        store.append(DECISIONS, UC, decision(1))
        store.sync()
        assert all(s.synced == s.size for s in store._writer.active.values())


def test_disabled_mode_writes_nothing(tmp_path: Path) -> None:
    with LogStore(tmp_path, durability="disabled") as store:
        for i in range(10):
            store.append(DECISIONS, UC, decision(i))
    assert not (tmp_path / "logs" / DECISIONS).exists()
    assert read_decisions(tmp_path, UC).height == 0


def test_close_is_idempotent_and_final(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    store.append(DECISIONS, UC, decision(0))
    store.close()
    store.close()
    assert store.closed
    with pytest.raises(ValueError, match="closed"):
        store.append(DECISIONS, UC, decision(1))
    assert read_decisions(tmp_path, UC).height == 1
    with pytest.raises(ValueError, match="durability"):
        LogStore(tmp_path, durability="sometimes")  # type: ignore[arg-type]


# -- bad input -----------------------------------------------------------------------------
def test_bad_input_raises_and_leaves_the_log_intact(tmp_path: Path) -> None:
    with LogStore(tmp_path) as store:
        good = decision(0)
        store.append(DECISIONS, UC, good)
        with pytest.raises(ValueError, match="unknown log kind 'clicks'"):
            store.append("clicks", UC, decision(1))
        bad = decision(2)
        bad["features"] = {"tenure_days": {1, 2}}  # a set: not JSON
        with pytest.raises(ValueError, match="cannot encode"):
            store.append(DECISIONS, UC, bad)
        bad = decision(3)
        bad["features"] = {1: 2.0}  # non-string key
        with pytest.raises(ValueError, match="cannot encode"):
            store.append(DECISIONS, UC, bad)
        with pytest.raises(ValueError, match="must be a dict"):
            store.append(DECISIONS, UC, [1, 2])  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="decision_id"):
            store.append(DECISIONS, UC, {**decision(4), "decision_id": None})
        with pytest.raises(ValueError, match="timestamp"):
            store.append(DECISIONS, UC, {**decision(5), "timestamp": "2024-01-01"})
        with pytest.raises(ValueError, match="observation_id"):
            store.append(OBSERVATIONS, UC, decision(6))
        with pytest.raises(ValueError, match="use case"):
            store.append(DECISIONS, "../../etc", decision(7))
        store.append(DECISIONS, UC, decision(8))
    df = read_decisions(tmp_path, UC)
    assert df["subject_id"].to_list() == ["u0", "u8"]
    assert recover(tmp_path)["bytes_dropped"] == 0


# -- segments: scanning and recovery -------------------------------------------------------
def _hand_written_segment(home: Path, stem: str, records: list[dict], tail: bytes) -> Path:
    d = sg.segment_dir(home / "logs", DECISIONS, UC)
    d.mkdir(parents=True, exist_ok=True)
    path = d / f"{stem}.open"
    path.write_bytes(b"".join(sg.encode_line(orjson.dumps(r)) for r in records) + tail)
    return path


STEM = "20240101T000000000000Z-4242-deadbeef-000001"


def test_recover_drops_a_torn_tail_and_keeps_everything_before(tmp_path: Path) -> None:
    recs = [decision(i) for i in range(10)]
    torn = sg.encode_line(orjson.dumps(decision(99)))[:-37]  # partial last line
    path = _hand_written_segment(tmp_path, STEM, recs, torn)
    # readers skip the incomplete line even before recovery
    assert read_decisions(tmp_path, UC).height == 10
    report = recover(tmp_path)
    assert report["segments_recovered"] == 1
    assert report["bytes_dropped"] == len(torn) and report["records_kept"] == 10
    assert not path.exists()
    sealed = path.with_suffix(".seg")
    assert sealed.read_bytes().endswith(b"\n")
    quarantined = tmp_path / "logs" / DECISIONS / "_quarantine" / UC / f"{STEM}.torn"
    assert quarantined.read_bytes() == torn
    df = read_decisions(tmp_path, UC)
    assert df["decision_id"].to_list() == [r["decision_id"] for r in recs]
    assert recover(tmp_path)["segments_recovered"] == 0


def test_recover_drops_a_corrupt_last_line(tmp_path: Path) -> None:
    recs = [decision(i) for i in range(5)]
    line = bytearray(sg.encode_line(orjson.dumps(decision(5))))
    line[20] ^= 0x01  # complete line, wrong crc
    _hand_written_segment(tmp_path, STEM, recs, bytes(line))
    assert recover(tmp_path)["bytes_dropped"] == len(line)
    assert read_decisions(tmp_path, UC).height == 5
    assert compact(tmp_path)["rows"] == 5
    assert read_decisions(tmp_path, UC).height == 5


def test_scan_stops_at_the_first_damaged_line() -> None:
    lines = [sg.encode_line(orjson.dumps({"i": i})) for i in range(4)]
    bad = b"zzzzzzzz " + lines[2][9:]
    data = lines[0] + lines[1] + bad + lines[3]
    payloads, valid = sg.scan(data)
    assert [orjson.loads(p)["i"] for p in payloads] == [0, 1]
    assert valid == len(lines[0]) + len(lines[1])
    assert sg.scan(b"")[0] == [] and sg.scan(b"\n")[1] == 0
    assert sg.scan(lines[0][:-1]) == ([], 0)


def test_recover_and_compact_leave_live_segments_alone(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    for i in range(5):
        store.append(DECISIONS, UC, decision(i))
    [live] = seg_files(tmp_path)
    records = live.read_bytes()[: sg.scan(live.read_bytes())[1]]
    assert recover(tmp_path)["live_segments"] == 1
    report = compact(tmp_path)
    assert report["segments_compacted"] == 0 and report["live_segments"] == 1
    assert live.exists() and live.read_bytes().startswith(records)
    store.append(DECISIONS, UC, decision(5))
    assert read_decisions(tmp_path, UC).height == 6
    store.close()
    assert compact(tmp_path)["rows"] == 6
    assert read_decisions(tmp_path, UC).height == 6


def test_dead_writer_segment_is_recovered_by_compaction(tmp_path: Path) -> None:
    recs = [decision(i) for i in range(7)]
    _hand_written_segment(tmp_path, STEM, recs, b"0000")
    report = compact(tmp_path, UC)
    assert report["segments_recovered"] == 1 and report["rows"] == 7
    assert seg_files(tmp_path) == []
    assert read_decisions(tmp_path, UC)["decision_id"].to_list() == [r["decision_id"] for r in recs]


def test_compaction_concurrent_with_a_live_writer_and_readers(tmp_path: Path) -> None:
    store = LogStore(
        tmp_path, max_segment_bytes=3_000, max_segment_age_s=0.05, fsync_interval_s=0.01
    )
    acked: list[str] = []
    done = threading.Event()
    errors: list[BaseException] = []

    def write() -> None:
        try:
            for i in range(1500):
                r = decision(i)
                store.append(DECISIONS, UC, r)
                acked.append(r["decision_id"])
                if i % 100 == 0:
                    time.sleep(0.01)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)
        finally:
            done.set()

    def compact_loop() -> None:
        try:
            while not done.is_set():
                compact(tmp_path, UC)
        except BaseException as exc:  # pragma: no cover
            errors.append(exc)

    threads = [threading.Thread(target=write), threading.Thread(target=compact_loop)]
    for t in threads:
        t.start()
    reads = 0
    while not done.is_set():
        before = set(acked)
        got = read_decisions(tmp_path, UC)["decision_id"]
        assert got.n_unique() == got.len(), "a record was returned twice"
        assert before <= set(got.to_list()), "an acknowledged record was missed"
        reads += 1
    for t in threads:
        t.join()
    assert not errors, errors
    assert reads > 0
    store.close()
    compact(tmp_path)
    got = read_decisions(tmp_path, UC)["decision_id"]
    assert got.len() == got.n_unique() == 1500
    assert set(got.to_list()) == set(acked)
    assert seg_files(tmp_path) == []


def test_fork_child_does_not_write_to_the_parents_segments(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    store.append(DECISIONS, UC, decision(0))
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            store.append(DECISIONS, UC, decision(1))
            store.close()
        except BaseException:
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    store.append(DECISIONS, UC, decision(2))
    assert recover(tmp_path)["live_segments"] == 1  # the parent's lock survived the child
    store.close()
    assert sorted(read_decisions(tmp_path, UC)["subject_id"].to_list()) == ["u0", "u1", "u2"]
    assert len(seg_files(tmp_path)) == 2


def test_exit_without_close_seals_segments(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from looper_pipelines.logs import LogStore\n"
        "s = LogStore(sys.argv[1])\n"
        "s.append('observations', 'notification_send', {'observation_id': 'o1', 'decision_id': 'd',"
        " 'use_case': 'notification_send', 'name': 'click', 'value': 1.0, 'timestamp': 1})\n"
    )
    subprocess.run([sys.executable, "-c", code, str(tmp_path)], check=True, timeout=60)
    files = seg_files(tmp_path, OBSERVATIONS)
    assert [f.suffix for f in files] == [".seg"]
    assert read_observations(tmp_path, UC)["observation_id"].to_list() == ["o1"]


def test_reader_tolerates_a_badly_typed_value(tmp_path: Path) -> None:
    recs = [decision(0), {**decision(1), "propensity": "high", "action_index": "one"}]
    _hand_written_segment(tmp_path, STEM, recs, b"")
    df = read_decisions(tmp_path, UC)
    assert df.schema == pl.Schema(DECISION_SCHEMA)
    assert df["propensity"].to_list() == [0.9, None]


def test_a_full_disk_fails_only_the_append_that_needs_space(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from looper_pipelines.logs import writer

    real = writer._PWRITE

    def full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    big = {**decision(1), "features": {"blob": "x" * (3 << 20)}}  # needs the file to grow
    with LogStore(tmp_path) as store:
        store.append(DECISIONS, UC, decision(0))
        monkeypatch.setattr(writer, "_PWRITE", full)
        with pytest.raises(OSError, match="No space left on device; record not logged"):
            store.append(DECISIONS, UC, big)
        store.append(DECISIONS, UC, decision(2))  # fits the space already reserved
        monkeypatch.setattr(writer, "_PWRITE", real)
        store.append(DECISIONS, UC, {**big, "subject_id": "u3"})
    assert sorted(read_decisions(tmp_path, UC)["subject_id"].to_list()) == ["u0", "u2", "u3"]
    assert recover(tmp_path)["bytes_dropped"] == 0
    assert compact(tmp_path)["rows"] == 3


def test_an_active_segment_is_preallocated_and_sealed_to_its_records(tmp_path: Path) -> None:
    store = LogStore(tmp_path)
    store.append(DECISIONS, UC, decision(0))
    [live] = seg_files(tmp_path)
    line = len(sg.encode_line(orjson.dumps(decision(0))))
    data = live.read_bytes()
    assert len(data) > line and not data[line:].strip(b"\0")  # zeros past the record
    assert read_decisions(tmp_path, UC).height == 1
    store.close()
    [sealed] = seg_files(tmp_path)
    assert sealed.suffix == ".seg" and sealed.stat().st_size == line


def test_recovery_does_not_quarantine_preallocated_zeros(tmp_path: Path) -> None:
    recs = [decision(i) for i in range(3)]
    path = _hand_written_segment(tmp_path, STEM, recs, b"\0" * 70_000)
    report = recover(tmp_path)
    assert report["segments_recovered"] == 1 and report["bytes_dropped"] == 0
    assert not (tmp_path / "logs" / DECISIONS / "_quarantine").exists()
    sealed = path.with_suffix(".seg")
    assert sealed.stat().st_size == sum(len(sg.encode_line(orjson.dumps(r))) for r in recs)
    assert read_decisions(tmp_path, UC).height == 3


def test_seal_makes_everything_compactable_while_the_store_stays_open(tmp_path: Path) -> None:
    with LogStore(tmp_path) as store:
        for i in range(5):
            store.append(DECISIONS, UC, decision(i))
        store.seal()
        assert [f.suffix for f in seg_files(tmp_path)] == [".seg"]
        assert compact(tmp_path)["rows"] == 5
        store.append(DECISIONS, UC, decision(5))
        assert read_decisions(tmp_path, UC).height == 6
    assert compact(tmp_path)["rows"] == 1
    assert read_decisions(tmp_path, UC)["subject_id"].to_list() == [f"u{i}" for i in range(6)]
