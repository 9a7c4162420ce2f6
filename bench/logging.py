"""Decision logging: writer throughput, group commit, and what logging adds to a decision.

One run measures, each against a baseline run in the same process:

  (a) the writer alone at default durability, one thread, records/s (goal >= 200,000),
      against a bare unbuffered ``os.write`` of the same pre-encoded lines;
  (b) strict durability from 8 threads: records/s and appends per fsync (group commit),
      against strict from one thread (one fsync per append);
  (c) the in-process SDK call ``get_decision`` with logging at default durability against
      the same call with logging disabled (goal: logging adds <= 30 %), on a cold start
      (no model: the cheapest call, so the largest share for logging) and with a published
      compiled champion (two label models scoring both actions; ``champion.py``).

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
import runpy  # noqa: E402
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


# -- (a) writer alone ----------------------------------------------------------------------
def _rates(blocks: list[tuple[float, float]], block: int) -> dict[str, float]:
    """records/s from (wall, cpu) seconds per block: overall, and in the best block."""
    wall = sum(b[0] for b in blocks)
    cpu = sum(b[1] for b in blocks)
    return {
        "wall": block * len(blocks) / wall,
        "wall_best": block / min(b[0] for b in blocks),
        "cpu": block * len(blocks) / cpu,
    }


def bench_writer(home: Path, record: dict, line: bytes, n: int, block: int) -> dict:
    """LogStore.append against a bare os.write of the same line, alternating in blocks so
    that both see the same machine load."""
    raw_path = home / "raw.bin"
    fd = os.open(raw_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    store = LogStore(home, durability="default")
    append, write = store.append, os.write
    clock, cpu = time.perf_counter, time.process_time
    raw: list[tuple[float, float]] = []
    logged: list[tuple[float, float]] = []
    for _ in range(max(1, n // block)):
        t0, c0 = clock(), cpu()
        for _ in range(block):
            write(fd, line)
        raw.append((clock() - t0, cpu() - c0))
        t0, c0 = clock(), cpu()
        for _ in range(block):
            append(DECISIONS, UC, record)
        logged.append((clock() - t0, cpu() - c0))
    stats = store.stats
    store.close()
    os.close(fd)
    raw_path.unlink()
    return {"raw": _rates(raw, block), "writer": _rates(logged, block), "stats": stats}


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
def bench_client(home: Path, n: int, block: int, champion: bool = False) -> dict | None:
    """get_decision with logging disabled and at default durability, alternating in blocks;
    the ratio is the median over back-to-back pairs of blocks (robust to machine load)."""
    try:
        from looper_pipelines.client import LooperClient
    except ImportError:
        return None
    if champion:
        runpy.run_path(os.path.join(_HERE, "champion.py"))["publish_champion"](home)
    off = LooperClient.local(home, log_durability="disabled")
    assert (off.deployment(UC).model_version is not None) == champion
    on = LooperClient.local(home, log_durability="default")
    subjects = [f"u{i}" for i in range(block)]
    for c in (off, on):  # warm up
        for s in subjects:
            c.get_decision(UC, s, FEATURES)
    clock, cpu = time.perf_counter, time.process_time
    pairs: list[tuple[tuple[float, float], tuple[float, float]]] = []
    for k in range(max(1, n // block)):
        timed = []
        for c in (off, on) if k % 2 == 0 else (on, off):
            get = c.get_decision
            t0, c0 = clock(), cpu()
            for s in subjects:
                get(UC, s, FEATURES)
            timed.append((c, clock() - t0, cpu() - c0))
        by = {c: (w, u) for c, w, u in timed}
        pairs.append((by[off], by[on]))
    off.close()
    on.close()
    us = 1e6 / block
    return {
        "off_us": statistics.median(p[0][0] for p in pairs) * us,
        "on_us": statistics.median(p[1][0] for p in pairs) * us,
        "off_cpu_us": statistics.median(p[0][1] for p in pairs) * us,
        "on_cpu_us": statistics.median(p[1][1] for p in pairs) * us,
        "ratio": statistics.median(p[1][0] / p[0][0] for p in pairs),
        "cpu_ratio": statistics.median(p[1][1] / p[0][1] for p in pairs),
        "pairs": len(pairs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="fewer records")
    args = ap.parse_args()
    n = 50_000 if args.quick else 200_000
    strict_per_thread = 250 if args.quick else 1000
    client_n = 10_000 if args.quick else 40_000

    home = Path(tempfile.mkdtemp(prefix="looper-bench-logging-"))
    load0 = os.getloadavg()[0]
    try:
        record = decision_record()
        line = encode_line(orjson.dumps(record))
        print(f"record line {len(line)} bytes; {os.cpu_count()} CPUs; load average {load0:.1f}")

        a = bench_writer(home, record, line, n, block=5_000)
        shutil.rmtree(home / "logs")
        s1_rate, s1 = bench_strict(home, record, 1, strict_per_thread)
        s8_rate, s8 = bench_strict(home, record, 8, strict_per_thread)
        shutil.rmtree(home / "logs")
        client = bench_client(home / "cold", client_n, block=500)
        model = bench_client(home / "champion", client_n, block=500, champion=True)
        load1 = os.getloadavg()[0]

        raw, wr, stats = a["raw"], a["writer"], a["stats"]
        print()
        print(f"{'measure':<50} {'overall':>10} {'best block':>11} {'per CPU-s':>10}")
        for name, r in (
            ("(a) bare os.write of the encoded line, records/s", raw),
            ("(a) LogStore.append default, 1 thread, records/s", wr),
        ):
            print(f"{name:<50} {r['wall']:>10,.0f} {r['wall_best']:>11,.0f} {r['cpu']:>10,.0f}")
        print(f"{'(b) strict, 1 thread, records/s':<50} {s1_rate:>10,.0f}")
        print(f"{'(b) strict, 8 threads, records/s':<50} {s8_rate:>10,.0f}")
        for tag, c in (("cold start", client), ("champion", model)):
            if c:
                print(
                    f"{f'(c) get_decision, {tag}, no logging, us/call':<50} {c['off_us']:>10.2f} "
                    f"{'':>11} {c['off_cpu_us']:>10.2f}"
                )
                print(
                    f"{f'(c) get_decision, {tag}, logging, us/call':<50} {c['on_us']:>10.2f} "
                    f"{'':>11} {c['on_cpu_us']:>10.2f}"
                )
        print(
            f"(a: {stats['appends']:,} appends in blocks of 5,000 alternating with the baseline, "
            f"{stats['fsyncs']} background fsyncs; c: medians over {client['pairs'] if client else 0} "
            f"pairs of 500-call blocks; load average {load0:.1f} at start, {load1:.1f} at end)"
        )
        print()
        print("ratios")
        best = wr["wall_best"]
        print(
            f"  (a) writer / bare os.write:               {wr['wall'] / raw['wall']:.2f} "
            f"(CPU {wr['cpu'] / raw['cpu']:.2f}); goal >= 200,000 records/s: "
            f"{'met' if best >= 200_000 else 'not met'} in the best block, "
            f"{'met' if wr['wall'] >= 200_000 else 'not met'} overall"
        )
        print(
            f"  (b) appends per fsync, strict 8 threads:   {s8['appends'] / max(1, s8['fsyncs']):.1f} "
            f"(1 thread: {s1['appends'] / max(1, s1['fsyncs']):.1f}); throughput 8 threads / 1 "
            f"thread: {s8_rate / s1_rate:.1f}x"
        )
        for tag, c in (("cold start", client), ("champion", model)):
            if c:
                print(
                    f"  (c) get_decision logged / not, {tag + ':':<11} {c['ratio']:.2f} "
                    f"(CPU {c['cpu_ratio']:.2f}); logging adds {c['ratio'] - 1:+.0%}, "
                    f"{c['on_us'] - c['off_us']:.2f} us (goal <= +30%: "
                    f"{'met' if c['ratio'] <= 1.30 else 'not met'})"
                )
            else:
                print("  (c) client not available: skipped")
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    main()
