"""``looper loop``: rounds of the closed loop with the truth printed after each."""

from __future__ import annotations

import argparse
import json

from looper_pipelines.errors import CommandError


def print_round(rep: object, as_json: bool) -> None:
    from looper_pipelines.loop import RoundReport

    assert isinstance(rep, RoundReport)
    if as_json:
        keys = ("round", "policy_value", "oracle_value", "best_constant_value", "guardrail_value", "guardrail_bound",
                "greedy_value", "exploration_cost", "experiment_cost", "epsilon", "promoted", "decisions")
        d = rep.to_dict()
        print(json.dumps({k: d[k] for k in keys} | {"champion": rep.champion, "policy_version": rep.policy_version}), flush=True)
        return
    g = "-" if rep.guardrail_value is None else f"{rep.guardrail_value:+.4f} (bound {rep.guardrail_bound:+.4f})"
    print(f"round {rep.round} [{rep.days}, {rep.decisions} decisions]: deployed policy {rep.policy_value:.4f} | "
          f"oracle {rep.oracle_value:.4f} | best constant {rep.best_constant_value:.4f} | "
          f"{rep.share_of_oracle:.0%} of oracle, {rep.share_of_lift:.0%} of its lift | guardrail {g} | "
          f"lost to exploration {rep.exploration_cost:.4f} (epsilon {rep.epsilon:.3f}), to the experiment "
          f"{rep.experiment_cost:.4f} | champion {rep.champion or '-'} policy {rep.policy_version}", flush=True)


def run(args: argparse.Namespace) -> int:
    from looper_pipelines.loop import LoopError, run_loop
    from looper_pipelines.simulation import SIMULATORS

    if args.use_case not in SIMULATORS:
        raise CommandError(f"--use-case: no simulator for {args.use_case!r}; available: {sorted(SIMULATORS)}")
    if args.rounds < 1 or args.subjects < 100 or args.days < 2:
        raise CommandError("need --rounds >= 1, --subjects >= 100 and --days >= 2 (training splits by day)")
    try:
        run_loop(args.home, args.use_case, args.rounds, args.subjects, args.days, args.seed,
                 on_round=lambda r: print_round(r, args.json))
    except LoopError as e:
        raise CommandError(str(e)) from None
    return 0
