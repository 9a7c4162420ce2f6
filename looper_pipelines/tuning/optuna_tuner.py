"""Optuna over the blueprint's policy parameters: maximise the doubly robust estimate of
the objective, with guardrails as constraints (TPE with ``constraints_func``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

import numpy as np

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.evaluation.policy_value import (
    LoggedData,
    estimate_lift,
    estimate_value,
    guardrail_increase,
    objective_weights,
    policy_probabilities,
)
from looper_pipelines.policies import build_policy


@dataclass
class TuningResult:
    params: dict[str, float]
    value: float
    guardrails: dict[str, float]
    feasible: bool
    trials: list[dict[str, float]] = field(default_factory=list)

    @property
    def policy_version(self) -> str:
        raw = json.dumps({"params": self.params}, sort_keys=True).encode()
        return "p" + hashlib.sha256(raw).hexdigest()[:11]


# one-sided 90% lower bound of the lift over the blueprint's own parameters
SELECTION_ALPHA = 0.2


def _evaluate(
    bp: Blueprint, data: LoggedData, params: dict[str, float], reference: np.ndarray
) -> tuple[float, float, dict[str, float]]:
    """DR value of the policy, the lower bound of its lift over the reference policy, and
    the guardrail increases."""
    target = policy_probabilities(bp, build_policy(bp, params), data.scores)
    w = objective_weights(bp)
    value = estimate_value(data, target, w, "dr").value
    lift_low = estimate_lift(data, target, reference, w, "dr", SELECTION_ALPHA).ci_low
    guards = {k: v.value for k, v in guardrail_increase(bp, data, target, "dr").items()}
    return value, lift_low, guards


def _violation(bp: Blueprint, guards: dict[str, float]) -> list[float]:
    return [guards[g.label] - g.max_increase for g in bp.objective.guardrails]


def tune_policy(bp: Blueprint, data: LoggedData, seed: int = 0, n_trials: int | None = None) -> TuningResult:
    """Feasible parameters with the best lower confidence bound on their lift over the
    blueprint's own values (trial 0), so the search departs from the defaults only for a
    gain the data supports rather than for the largest, possibly lucky, point estimate."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    params_spec = bp.policy.parameters
    n_trials = n_trials or bp.policy.trials
    reference = policy_probabilities(bp, build_policy(bp, bp.policy.values), data.scores)
    if not params_spec:
        value, _, guards = _evaluate(bp, data, {}, reference)
        ok = all(v <= 0 for v in _violation(bp, guards))
        return TuningResult({}, value, guards, ok, [{"value": value, **guards}])

    def objective(trial: optuna.Trial) -> float:
        params = {p.name: trial.suggest_float(p.name, p.low, p.high) for p in params_spec}
        value, lift_low, guards = _evaluate(bp, data, params, reference)
        trial.set_user_attr("lift_low", lift_low)
        trial.set_user_attr("guardrails", guards)
        violations = _violation(bp, guards)
        trial.set_user_attr("constraints", violations)
        for g, v in zip(bp.objective.guardrails, violations, strict=True):
            trial.set_constraint(f"guardrail_{g.label}", v)  # feasible when <= 0
        return value

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, n_trials))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(bp.policy.values)
    study.optimize(objective, n_trials=n_trials)
    trials = []
    best = None
    for t in study.trials:
        if t.value is None:
            continue
        feasible = all(c <= 0 for c in t.user_attrs["constraints"])
        trials.append({"number": t.number, "value": t.value, "lift_low": t.user_attrs["lift_low"],
                       "feasible": float(feasible), **t.params,
                       **{f"guardrail_{k}": v for k, v in t.user_attrs["guardrails"].items()}})
        key = (t.user_attrs["lift_low"], t.value)
        if feasible and (best is None or key > (best.user_attrs["lift_low"], best.value)):
            best = t
    if best is None:  # nothing feasible: least violating
        best = min((t for t in study.trials if t.value is not None), key=lambda t: max(t.user_attrs["constraints"] or [0]))
        feasible = False
    else:
        feasible = True
    return TuningResult(
        params={k: float(v) for k, v in best.params.items()},
        value=float(best.value),
        guardrails=dict(best.user_attrs["guardrails"]),
        feasible=feasible,
        trials=trials,
    )


def pareto_mask(values: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Trials not dominated in (higher value, lower guardrail cost)."""
    n = len(values)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        dominated = (values >= values[i]) & (costs <= costs[i]) & ((values > values[i]) | (costs < costs[i]))
        mask[i] = not dominated.any()
    return mask
