"""The closed loop at full size: does running Looper make decisions better round after round?

Runs `looper loop` logic on the simulated notification product (cold start in round 0) and
prints, per round, the true value of the deployed policy against the oracle and the best
constant policy, the share of the oracle's lift captured, and the guardrail. Goals after 3
rounds: >= 90% of the oracle's value, >= 60% of its lift over the best constant (goal 80%),
guardrail within its bound.

    python bench/loop.py [--rounds 3] [--subjects 6000] [--days 3] [--quick]
"""

from __future__ import annotations

import os
import sys

# Run as a script, this file's folder is first on sys.path, where bench/logging.py would
# shadow the standard library's ``logging`` for the libraries imported below.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE]

import argparse  # noqa: E402
import json  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402

from looper_pipelines.loop import RoundReport, run_loop  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--subjects", type=int, default=6000)
    ap.add_argument("--days", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="smaller traffic (CI-sized)")
    args = ap.parse_args()
    if args.quick:
        args.subjects = 2500
    t0 = time.perf_counter()

    def show(r: RoundReport) -> None:
        g = f"{r.guardrail_value:+.4f}/{r.guardrail_bound:+.4f}" if r.guardrail_value is not None else "-"
        print(f"round {r.round}: decisions {r.decisions:6d}  policy {r.policy_value:.4f}  oracle {r.oracle_value:.4f}  "
              f"constant {r.best_constant_value:.4f}  of-oracle {r.share_of_oracle:6.1%}  of-lift {r.share_of_lift:6.1%}  "
              f"guardrail {g}  champion {r.champion}  [{time.perf_counter() - t0:.0f}s]", flush=True)

    with tempfile.TemporaryDirectory() as home:
        reports = run_loop(home, "notification_send", args.rounds, args.subjects, args.days, args.seed, on_round=show)
    last = reports[-1]
    room = (last.oracle_value - last.best_constant_value) / last.best_constant_value
    print(json.dumps({
        "rounds": args.rounds, "subjects": args.subjects, "days_per_round": args.days,
        "share_of_oracle": round(last.share_of_oracle, 4), "share_of_lift": round(last.share_of_lift, 4),
        "oracle_lift_over_constant": round(room, 4),
        "guardrail_ok": last.guardrail_value is None or last.guardrail_value <= (last.guardrail_bound or 0),
        "goals_met": last.share_of_oracle >= 0.9 and last.share_of_lift >= 0.6 and room >= 0.15,
        "seconds": round(time.perf_counter() - t0, 1),
    }))


if __name__ == "__main__":
    main()
