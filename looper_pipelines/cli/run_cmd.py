"""``looper run``: the data job over a range of days, then the model job, with every gate's
verdict. Exit 0 when a challenger was promoted, 3 when a gate kept it out, 2 on errors."""

from __future__ import annotations

import argparse

from looper_pipelines.errors import CommandError

GATE_FAILED = 3


def run(args: argparse.Namespace) -> int:
    from looper_pipelines.pipeline_run import RunError, run_use_case

    try:
        out = run_use_case(args.home, args.use_case, args.from_day, args.to_day)
    except RunError as e:
        raise CommandError(str(e)) from None
    failed = [k for k, ok in out.checks.items() if not ok]
    print(f"{out.use_case}: data job over {out.first_day}..{out.last_day} ({out.days_with_decisions} days with "
          f"decisions); checks {'all passed' if not failed else 'failed: ' + ', '.join(failed)}")
    if out.tuning:
        print(f"policy: {out.tuning}")
    verdict = "PROMOTED" if out.promoted else "NOT PROMOTED"
    print(f"challenger {out.challenger or '-'}: {verdict}")
    for reason in out.reasons:
        print(f"  {reason}")
    print(f"champion {out.champion or '-'}, serving {out.serving_version or 'the default action (no champion)'}")
    if out.promoted:
        return 0
    return GATE_FAILED if out.gate_failed else 0
