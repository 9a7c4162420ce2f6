"""``looper simulate``: simulated traffic through the real SDK."""

from __future__ import annotations

import argparse
import json

from looper_pipelines.errors import CommandError


def run(args: argparse.Namespace) -> int:
    from looper_pipelines.simulation import SIMULATORS, run_simulation

    if args.use_case not in SIMULATORS:
        raise CommandError(f"--use-case: no simulator for {args.use_case!r}; available: {sorted(SIMULATORS)}")
    for name in ("subjects", "days"):
        if getattr(args, name) < 1:
            raise CommandError(f"--{name}: must be at least 1")
    report = run_simulation(args.home, args.use_case, args.subjects, args.days, args.seed, start=args.start)
    d = report.to_dict()
    if args.json:
        print(json.dumps(d, sort_keys=True))
    else:
        print(f"{args.use_case}: {d['decisions']} decisions, {d['observations']} observations "
              f"({d['duplicates']} duplicates, {d['dropped']} dropped, {d['late']} late) over {d['days']} days "
              f"{d['start']}..{d['end']}")
    return 0
