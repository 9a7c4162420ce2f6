"""Decision logging: writer throughput, group commit, and what logging adds to a decision.

One run measures, each against a baseline run in the same process:

  (a) the writer alone at default durability, one thread, records/s (goal >= 200,000),
      against a bare unbuffered ``os.write`` of the same pre-encoded lines;
  (b) strict durability from 8 threads: records/s and appends per fsync (group commit),
      against strict from one thread (one fsync per append);
  (c) the in-process SDK call ``get_decision`` with logging at default durability against
      the same call with logging disabled (goal: logging adds <= 30 %).

    python bench/logging.py            # full run
    python bench/logging.py --quick    # fewer records
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder is first on sys.path and its name would shadow the
# standard library's ``logging`` for every library imported below.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import orjson  # noqa: E402

from looper_pipelines.logs import LogStore  # noqa: E402
from looper_pipelines.logs.records import DECISIONS, new_decision_id, now_us  # noqa: E402
from looper_pipelines.logs.segments import encode_line  # noqa: E402

UC = "notification_send"
FEATURES = {"tenure_days": 10.0, "hour_of_day": 3}


def decision_record() -> dict:
    """A decision record as the SDK logs it for ``notification_send`` (~450 bytes)."""
    ts = now_us()
    return {
        "decision_id": new_decision_id(UC, ts),
        "use_case": UC,
        "subject_id": "u1234567",
        "timestamp": ts,
        "features": {
            "tenure_days": 10.0,
            "sessions_last_7d": 0,
            "days_since_last_visit": 30.0,
            "notif_open_rate": None,
            "notifs_last_7d": 0,
            "platform": "web",
            "hour_of_day": 3,
        },
        "action": "send",
        "action_index": 1,
        "propensity": 0.86,
        "scores": {"click": 0.1234, "unsubscribe": 0.0123},
        "model_version": "3",
        "blueprint_version": "cd689c861fe1",
        "policy_version": "4284703d8f2f",
        "explored": False,
        "experiment_arm": None,
        "assignment_probability": None,
    }


# -- (a) writer alone ----------------------------------------------------------------------
def bench_raw_write(home: Path, line: bytes, n: int) -> tuple[float, float]:
    """records/s by the wall clock and per CPU-second of this process."""
    path = home / "raw.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    write = os.write
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        write(fd, line)
    dt, ct = time.perf_counter() - t0, time.process_time() - c0
    os.fsync(fd)  # untimed: leave no dirty pages to be written back during the next run
    os.close(fd)
    path.unlink()
    return n / dt, n / ct


def bench_writer(home: Path, record: dict, n: int) -> tuple[float, float, dict]:
    store = LogStore(home, durability="default")
    append = store.append
    t0, c0 = time.perf_counter(), time.process_time()
    for _ in range(n):
        append(DECISIONS, UC, record)
    dt, ct = time.perf_counter() - t0, time.process_time() - c0
    stats = store.stats
    store.close()
    return n / dt, n / ct, stats


# -- (b) strict mode, group commit ---------------------------------------------------------
def bench_strict(home: Path, record: dict, threads: int, per_thread: int) -> tuple[float, dict]:
    store = LogStore(home, durability="strict")
    barrier = threading.Barrier(threads + 1)

    def work() -> None:
        append = store.append
        barrier.wait()
        for _ in range(per_thread):
            append(DECISIONS, UC, record)

    ts = [threading.Thread(target=work) for _ in range(threads)]
    for t in ts:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in ts:
        t.join()
    dt = time.perf_counter() - t0
    stats = store.stats
    store.close()
    return threads * per_thread / dt, stats


# -- (c) the SDK call with and without logging ---------------------------------------------
def bench_client(home: Path, n: int, trials: int) -> dict | None:
    try:
        from looper_pipelines.client import LooperClient
    except ImportError:
        return None
    clients = {
        mode: LooperClient.local(home, log_durability=mode) for mode in ("disabled", "default")
    }
    wall: dict[str, list[float]] = {mode: [] for mode in clients}
    cpu: dict[str, list[float]] = {mode: [] for mode in clients}
    subjects = [f"u{i}" for i in range(n)]
    for c in clients.values():  # warm up
        for s in subjects[:1000]:
            c.get_decision(UC, s, FEATURES)
    for _ in range(trials):  # interleaved, so drift in machine load hits both alike
        for mode, c in clients.items():
            get = c.get_decision
            t0, c0 = time.perf_counter(), time.process_time()
            for s in subjects:
                get(UC, s, FEATURES)
            wall[mode].append((time.perf_counter() - t0) / n * 1e6)
            cpu[mode].append((time.process_time() - c0) / n * 1e6)
    for c in clients.values():
        c.close()
    return {
        "off_us": min(wall["disabled"]),
        "on_us": min(wall["default"]),
        "off_cpu_us": min(cpu["disabled"]),
        "on_cpu_us": min(cpu["default"]),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer records")
    args = ap.parse_args()
    n = 50_000 if args.quick else 200_000
    trials = 3 if args.quick else 5
    strict_per_thread = 250 if args.quick else 1000
    client_n = 5_000 if args.quick else 20_000

    home = Path(tempfile.mkdtemp(prefix="looper-bench-logging-"))
    load0 = os.getloadavg()[0]
    try:
        record = decision_record()
        line = encode_line(orjson.dumps(record))
        print(
            f"record line {len(line)} bytes; {os.cpu_count()} CPUs; load average {load0:.1f}; "
            f"best of {trials} trials"
        )

        raw_w, raw_c, wr_w, wr_c = [], [], [], []
        stats: dict = {}
        for _ in range(trials):  # interleaved with the baseline
            w, c = bench_raw_write(home, line, n)
            raw_w.append(w)
            raw_c.append(c)
            w, c, stats = bench_writer(home, record, n)
            wr_w.append(w)
            wr_c.append(c)
            shutil.rmtree(home / "logs")

        s1_rate, s1 = bench_strict(home, record, 1, strict_per_thread)
        s8_rate, s8 = bench_strict(home, record, 8, strict_per_thread)
        shutil.rmtree(home / "logs")

        client = bench_client(home, client_n, trials)
        load1 = os.getloadavg()[0]

        rows = [
            ("(a) bare os.write of the encoded line, records/s", max(raw_w), max(raw_c)),
            ("(a) LogStore.append, default, 1 thread, records/s", max(wr_w), max(wr_c)),
            ("(b) strict, 1 thread, records/s", s1_rate, None),
            ("(b) strict, 8 threads, records/s", s8_rate, None),
        ]
        if client:
            rows += [
                (
                    "(c) get_decision, logging disabled, us/call",
                    client["off_us"],
                    client["off_cpu_us"],
                ),
                (
                    "(c) get_decision, logging default, us/call",
                    client["on_us"],
                    client["on_cpu_us"],
                ),
            ]
        print()
        print(f"{'measure':<52} {'wall clock':>12} {'per CPU-s':>12}")
        for name, a, b in rows:
            fmt = "{:>12,.2f}" if "us/call" in name else "{:>12,.0f}"
            print(f"{name:<52} {fmt.format(a)} {fmt.format(b) if b is not None else '':>12}")
        print(
            f"(a) last writer run: {stats['appends']:,} appends, {stats['fsyncs']} background "
            f"fsyncs, {stats['segments_opened']} segments of {stats['bytes'] / 2**20:.0f} MiB in all"
        )
        print(
            f"(load average {load0:.1f} at start, {load1:.1f} at end; 'per CPU-s' counts this "
            "process's CPU time only, so it is what one free core would do)"
        )

        w_best, c_best = max(wr_w), max(wr_c)
        print()
        print("ratios")
        print(
            f"  (a) writer / bare os.write:             {w_best / max(raw_w):.2f} wall, "
            f"{c_best / max(raw_c):.2f} CPU; goal >= 200,000 records/s: "
            f"{'met' if w_best >= 200_000 else 'not met'} by the wall clock, "
            f"{'met' if c_best >= 200_000 else 'not met'} per CPU-second"
        )
        print(
            f"  (b) appends per fsync, strict 8 threads: {s8['appends'] / max(1, s8['fsyncs']):.1f} "
            f"(1 thread: {s1['appends'] / max(1, s1['fsyncs']):.1f}); throughput 8 threads / 1 "
            f"thread: {s8_rate / s1_rate:.1f}x"
        )
        if client:
            wall_ratio = client["on_us"] / client["off_us"]
            cpu_ratio = client["on_cpu_us"] / client["off_cpu_us"]
            print(
                f"  (c) get_decision logged / not logged:   {wall_ratio:.2f} wall, {cpu_ratio:.2f} CPU; "
                f"logging adds {wall_ratio - 1:+.0%} / {cpu_ratio - 1:+.0%} (goal <= +30%)"
            )
        else:
            print("  (c) client not available: skipped")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
