"""``looper demo``: the whole loop on a simulated product, on the embedded default.

Simulates traffic (cold start), runs the Dagster graph (logs → dbt → checks → training →
evaluation → HTE → tuning → promotion → compiled artifact), then serves decisions from the
promoted, compiled champion and shows them."""

from __future__ import annotations

import argparse

from looper_pipelines.cli.loop_cmd import print_round
from looper_pipelines.errors import CommandError


def run(args: argparse.Namespace) -> int:
    from looper_pipelines.client import LooperClient
    from looper_pipelines.home import HomeLayout
    from looper_pipelines.loop import LoopError, run_loop
    from looper_pipelines.simulation import get_simulator

    layout = HomeLayout.of(args.home)
    use_case = "notification_send"
    print(f"Looper demo: home {layout.root}")
    print(f"{args.rounds} rounds of {args.days} simulated days x {args.subjects} subjects of {use_case}; "
          "each round: serve + log -> Dagster (dbt, checks, LightGBM, MLflow, EconML, Optuna, promotion, TL2cgen) -> hot reload",
          flush=True)
    try:
        reports = run_loop(layout.root, use_case, args.rounds, args.subjects, args.days, args.seed,
                           on_round=lambda r: print_round(r, False))
    except LoopError as e:
        raise CommandError(str(e)) from None
    last = reports[-1]
    if last.champion is None:
        raise CommandError("no model was promoted; see `looper status` and the Dagster UI for why")
    sim = get_simulator(use_case, seed=args.seed)
    rows = sim.sample_rows(5, day=0, seed=args.seed + 99)
    with LooperClient.local(layout.root) as client:
        dep = client.deployment(use_case)
        print(f"\nServing {use_case}: champion model {dep.model_version}, policy {dep.policy_version} "
              f"{dep.policy_params} (compiled: {type(dep.scorer).__name__ if dep.scorer else 'none'})")
        for i, row in enumerate(rows):
            d = client.get_decision(use_case, f"demo-{i}", row)
            scores = {k: [round(x, 4) for x in v] for k, v in d.scores.items()}
            print(f"  get_decision(..., {row}) -> {d.action} (p={d.propensity:.3f}, scores {scores})")
    print("\nNext: `looper status`, `dagster dev -w workspace.yaml` (UI), `looper serve` (HTTP).")
    return 0
