"""The closed loop on a simulated product: serve → log → learn → tune → promote → serve.

Each round simulates traffic served by the current champion and policy (a cold start in
round 0), materialises the data and model jobs, and measures the newly deployed policy
against the simulator's truth: its value, the oracle's, the best constant policy's, and
the guardrail."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import timedelta
from functools import partial
from typing import Any

from looper_pipelines.home import HomeLayout


class LoopError(RuntimeError):
    pass


@dataclass
class RoundReport:
    """One round: the true value of the policy deployed after it (exploration and
    experiment included) against the oracle and the best constant policy; the value of the
    deployed policy's own (greedy) choice, and what exploration and the experiment arm cost
    per decision (``greedy_value - policy_value`` is their sum)."""

    round: int
    policy_value: float
    oracle_value: float
    best_constant_value: float
    guardrail_value: float | None
    guardrail_bound: float | None
    champion: str | None
    policy_version: str | None
    promoted: bool
    decisions: int
    days: str
    greedy_value: float = float("nan")
    exploration_cost: float = float("nan")
    experiment_cost: float = float("nan")
    epsilon: float = float("nan")
    experiment_share: float = float("nan")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def share_of_oracle(self) -> float:
        return self.policy_value / self.oracle_value if self.oracle_value else float("nan")

    @property
    def share_of_lift(self) -> float:
        d = self.oracle_value - self.best_constant_value
        return (self.policy_value - self.best_constant_value) / d if d else float("nan")


def run_loop(
    home: str | os.PathLike[str] | None,
    use_case: str,
    rounds: int,
    subjects: int = 3000,
    days_per_round: int = 3,
    seed: int = 0,
    eval_subjects: int = 20000,
    on_round: Callable[[RoundReport], None] | None = None,
) -> list[RoundReport]:
    from looper_pipelines.client import LooperClient
    from looper_pipelines.orchestration import Orchestrator, failure_summary
    from looper_pipelines.registry import CHAMPION
    from looper_pipelines.simulation import SimClock, get_simulator, resolve_start, run_simulation

    if rounds < 1:
        raise LoopError("rounds must be at least 1")
    layout = HomeLayout.of(home)
    orch = Orchestrator(str(layout.root))
    start_us = resolve_start(None)
    clock = SimClock(start_us)
    sim = get_simulator(use_case, seed=seed)
    reports: list[RoundReport] = []
    first_day = _day(start_us, 0)
    for r in range(rounds):
        day0 = r * days_per_round
        client = LooperClient.local(layout.root, clock=clock, seed=seed + r)
        try:
            sim_report = run_simulation(layout.root, use_case, subjects, days_per_round, seed + 1000 * r,
                                        start=_day(start_us, day0), client=client, clock=clock)
        finally:
            client.close()
        last_day = _day(start_us, day0 + days_per_round - 1)
        data = orch.materialize_data(use_case, first_day, last_day)
        if not data.success:
            raise LoopError(f"round {r}: data job failed:\n{failure_summary(data)}")
        models = orch.materialize_models(use_case)
        if not models.success:
            raise LoopError(f"round {r}: model job failed:\n{failure_summary(models)}")
        champion = _registry(orch).by_alias(use_case, CHAMPION)
        eval_day = day0 + days_per_round  # the population the new deployment will meet
        evaluator = LooperClient.local(layout.root, log_durability="disabled", seed=seed)
        try:
            ev = sim.policy_value(partial(evaluator.action_probabilities, use_case), n=eval_subjects,
                                  day=eval_day, seed=seed)
            greedy = sim.policy_value(partial(evaluator.action_probabilities, use_case, greedy=True),
                                      n=eval_subjects, day=eval_day, seed=seed)
            dep = evaluator.deployment(use_case)
        finally:
            evaluator.close()
        costs = _mixing_costs(sim, greedy.value, dep.mixing, eval_subjects, eval_day, seed)
        promoted = bool(champion) and (not reports or reports[-1].champion != champion.version)
        rep = RoundReport(
            round=r,
            policy_value=float(ev.value),
            oracle_value=sim.oracle_value(n=eval_subjects, day=eval_day, seed=seed),
            best_constant_value=sim.best_constant_value(n=eval_subjects, day=eval_day, seed=seed),
            guardrail_value=ev.guardrail_value,
            guardrail_bound=ev.guardrail_bound,
            champion=champion.version if champion else None,
            policy_version=dep.policy_version,
            promoted=promoted,
            decisions=sim_report.decisions,
            days=f"{_day(start_us, day0)}..{last_day}",
            greedy_value=float(greedy.value),
            **costs,
        )
        reports.append(rep)
        if on_round:
            on_round(rep)
    return reports


def _mixing_costs(sim: Any, greedy_value: float, mixing: Any, n: int, day: int, seed: int) -> dict[str, float]:
    """Value per decision lost to exploration and to the experiment arm, from the policy's
    linear mixture ``(1 - s) * ((1 - e) * greedy + e * uniform) + s * arms``."""
    import numpy as np

    from looper_pipelines.policies import Mixing, arm_probabilities

    bp = sim.blueprint
    k = len(bp.decision.actions)
    mixing = mixing or Mixing.cold_start(bp)
    eps, share = mixing.epsilon, mixing.experiment_share
    uniform = sim.policy_value(lambda rows: np.full((len(rows), k), 1.0 / k), n=n, day=day, seed=seed).value
    arms = greedy_value
    if share > 0:
        p = arm_probabilities(bp)
        arms = sim.policy_value(lambda rows: np.tile(p, (len(rows), 1)), n=n, day=day, seed=seed).value
    return {"exploration_cost": (1 - share) * eps * (greedy_value - uniform),
            "experiment_cost": share * (greedy_value - arms), "epsilon": eps, "experiment_share": share}


def _registry(orch: Any) -> Any:
    from looper_pipelines.registry import ModelRegistry

    lay = orch.layout
    return ModelRegistry(os.environ.get("MLFLOW_TRACKING_URI", lay.tracking_uri), lay.artifact_root)


def _day(start_us: int, offset: int) -> str:
    from looper_pipelines.simulation.base import to_datetime

    return (to_datetime(start_us) + timedelta(days=offset)).strftime("%Y-%m-%d")
