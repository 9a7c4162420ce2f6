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
import statistics  # noqa: E402
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


def best_and_median(xs: list[float]) -> tuple[float, float]:
    return max(xs), statistics.median(xs)


# -- (a) writer alone ----------------------------------------------------------------------
def bench_raw_write(home: Path, line: bytes, n: int) -> float:
    path = home / "raw.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    write = os.write
    t0 = time.perf_counter()
    for _ in range(n):
        write(fd, line)
    dt = time.perf_counter() - t0
    os.close(fd)
    path.unlink()
    return n / dt


def bench_writer(home: Path, record: dict, n: int) -> tuple[float, dict]:
    store = LogStore(home, durability="default")
    append = store.append
    t0 = time.perf_counter()
    for _ in range(n):
        append(DECISIONS, UC, record)
    dt = time.perf_counter() - t0
    stats = store.stats
    store.close()
    return n / dt, stats


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
    per_call: dict[str, list[float]] = {mode: [] for mode in clients}
    subjects = [f"u{i}" for i in range(n)]
    for c in clients.values():  # warm up
        for s in subjects[:1000]:
            c.get_decision(UC, s, FEATURES)
    for _ in range(trials):  # interleaved, so drift in machine load hits both alike
        for mode, c in clients.items():
            get = c.get_decision
            t0 = time.perf_counter()
            for s in subjects:
                get(UC, s, FEATURES)
            per_call[mode].append((time.perf_counter() - t0) / n * 1e6)
    logged = clients["default"]._log.stats["appends"]
    for c in clients.values():
        c.close()
    off = min(per_call["disabled"])
    on = min(per_call["default"])
    off_med = statistics.median(per_call["disabled"])
    on_med = statistics.median(per_call["default"])
    return {
        "off_us": off,
        "on_us": on,
        "ratio": on / off,
        "ratio_median": on_med / off_med,
        "logged": logged,
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
    try:
        record = decision_record()
        line = encode_line(orjson.dumps(record))
        print(f"record: {len(line)} bytes per line; home {home}; {os.cpu_count()} CPUs")

        raw, writer = [], []
        stats: dict = {}
        for _ in range(trials):
            raw.append(bench_raw_write(home, line, n))
            rate, stats = bench_writer(home, record, n)
            writer.append(rate)
            shutil.rmtree(home / "logs")
        raw_best, raw_med = best_and_median(raw)
        w_best, w_med = best_and_median(writer)

        s1_rate, s1 = bench_strict(home, record, 1, strict_per_thread)
        s8_rate, s8 = bench_strict(home, record, 8, strict_per_thread)
        shutil.rmtree(home / "logs")

        client = bench_client(home, client_n, trials)

        print()
        print(f"{'measure':<52} {'best':>12} {'median':>12}")
        print(
            f"{'(a) os.write of the pre-encoded line, records/s':<52} {raw_best:>12,.0f} {raw_med:>12,.0f}"
        )
        print(
            f"{'(a) LogStore.append default, 1 thread, records/s':<52} {w_best:>12,.0f} {w_med:>12,.0f}"
        )
        print(
            f"    appends {stats['appends']:,}, fsyncs {stats['fsyncs']}, segments {stats['segments_opened']}"
        )
        print(f"{'(b) strict, 1 thread, records/s':<52} {s1_rate:>12,.0f}")
        print(f"{'(b) strict, 8 threads, records/s':<52} {s8_rate:>12,.0f}")
        print(
            f"{'(c) get_decision, logging disabled, us/call':<52} {client['off_us']:>12.2f}"
            if client
            else "(c) client not available"
        )
        if client:
            print(f"{'(c) get_decision, logging default, us/call':<52} {client['on_us']:>12.2f}")
        print()
        print("ratios")
        print(
            f"  (a) writer / bare os.write throughput:      {w_best / raw_best:.2f}   "
            f"writer {w_best:,.0f} records/s (goal >= 200,000: {'met' if w_best >= 200_000 else 'NOT met'})"
        )
        print(
            f"  (b) appends per fsync, strict 8 threads:    {s8['appends'] / max(1, s8['fsyncs']):.1f}   "
            f"(1 thread: {s1['appends'] / max(1, s1['fsyncs']):.2f}); 8 threads / 1 thread throughput "
            f"{s8_rate / s1_rate:.1f}x"
        )
        if client:
            added = client["ratio"] - 1
            print(
                f"  (c) get_decision logged / not logged:       {client['ratio']:.3f}   "
                f"logging adds {added:+.1%} (median of trials {client['ratio_median'] - 1:+.1%}; "
                f"goal <= +30%: {'met' if added <= 0.30 else 'NOT met'})"
            )
        else:
            print("  (c) client not available: skipped")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
