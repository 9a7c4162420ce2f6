"""Optuna over the blueprint's policy parameters, judged on cross-fitted doubly robust
scores, and accepted only for an improvement the data supports.

1. A search (TPE, guardrails as constraints) maximises the lower confidence bound of a
   candidate's lift over the declared parameters, so it departs from them only for a gain
   the data supports rather than for the largest, possibly lucky, point estimate.
2. The search is cross-validated: for each fold of examples it runs on the other folds,
   and the parameters it picks there are scored on the fold it never saw. Those held-out
   scores give an honest estimate of what tuning gains over the declared parameters.
3. The parameters found on all examples replace the declared ones only when that honest
   gain has a lower ``policy.min_improvement_confidence`` bound above zero (or the declared
   parameters break a guardrail that the tuned ones keep, held out as well). Otherwise the
   declared parameters stay, and the result says why.

The scores (``DRScores``) come from label models that never saw the example they score,
and the policies choose on those models' predictions, as a deployed policy would on new
decisions.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.evaluation.dr_scores import DRScores, guardrail_from_terms, mean_interval
from looper_pipelines.evaluation.policy_value import LoggedData, objective_weights
from looper_pipelines.policies import Mixing, build_policy, deployed_probabilities

# the search ranks candidates by a one-sided 90% lower bound of their lift
SELECTION_ALPHA = 0.2


@dataclass
class TuningResult:
    params: dict[str, float]  # what serves: the tuned values when accepted, else the declared ones
    accepted: bool
    reason: str
    declared: dict[str, float]
    tuned: dict[str, float]  # the search's choice on all examples
    value: float  # cross-fitted DR value of ``params`` (deployed, with exploration)
    guardrails: dict[str, float]  # per guardrail label: its increase (or mean, for a cap) under ``params``
    feasible: bool  # ``params`` keep every guardrail (point estimates)
    greedy_value: float = float("nan")  # the same policy without exploration and experiment
    improvement: dict[str, float] = field(default_factory=dict)  # held-out gain of tuning over declared
    fold_params: list[dict[str, float]] = field(default_factory=list)
    trials: list[dict[str, float]] = field(default_factory=list)  # of the search on all examples

    @property
    def policy_version(self) -> str:
        raw = json.dumps({"params": self.params}, sort_keys=True).encode()
        return "p" + hashlib.sha256(raw).hexdigest()[:11]

    @property
    def mixing_cost(self) -> float:
        """Estimated value per decision lost to exploration and the experiment arm."""
        return self.greedy_value - self.value

    @property
    def uncertainty(self) -> dict[str, dict[str, float]]:
        """Spread of each parameter over the per-fold searches."""
        out: dict[str, dict[str, float]] = {}
        for name in self.declared:
            vals = np.array([p[name] for p in self.fold_params if name in p])
            if vals.size:
                out[name] = {"min": float(vals.min()), "max": float(vals.max()),
                             "std": float(vals.std(ddof=1)) if vals.size > 1 else 0.0}
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"params": self.params, "accepted": self.accepted, "reason": self.reason, "declared": self.declared,
                "tuned": self.tuned, "value": self.value, "greedy_value": self.greedy_value,
                "mixing_cost": self.mixing_cost, "guardrails": self.guardrails, "feasible": self.feasible,
                "improvement": self.improvement, "fold_params": self.fold_params, "uncertainty": self.uncertainty}


class _Judge:
    """Policies' deployed probabilities and their DR terms on a set of examples."""

    def __init__(self, bp: Blueprint, data: LoggedData, dr: DRScores, mixing: Mixing | None) -> None:
        self.bp = bp
        self.scores = data.scores
        self.dr = dr
        self.mixing = mixing
        self.weights = objective_weights(bp)
        self.objective = dr.combined(self.weights)

    def probs(self, params: dict[str, float], rows: np.ndarray | None = None) -> np.ndarray:
        scores = self.scores if rows is None else {k: v[rows] for k, v in self.scores.items()}
        return deployed_probabilities(self.bp, build_policy(self.bp, params).choose(scores), self.mixing)

    def terms(self, probs: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
        g = self.objective if rows is None else self.objective[rows]
        return (probs * g).sum(axis=1)

    def guard(self, probs: np.ndarray, rows: np.ndarray | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        return {g.label: self.dr.guardrail_terms(self.bp, g.label, probs, rows) for g in self.bp.objective.guardrails}


def _excess(bp: Blueprint, terms: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    return {label: guardrail_from_terms(bp, label, v, inc).excess for label, (v, inc) in terms.items()}


def _guard_values(bp: Blueprint, terms: dict[str, tuple[np.ndarray, np.ndarray]]) -> dict[str, float]:
    out = {}
    for g in bp.objective.guardrails:
        value, increase = terms[g.label]
        out[g.label] = float((increase if g.max_increase is not None else value).mean())
    return out


def _search(judge: _Judge, rows: np.ndarray | None, declared: dict[str, float], n_trials: int,
            seed: int) -> tuple[dict[str, float], list[dict[str, float]]]:
    """The feasible parameters with the best lower bound of their lift over ``declared`` on
    ``rows`` (ties: the higher point estimate); the declared values win ties at zero."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    bp = judge.bp
    spec = bp.policy.parameters
    reference = judge.terms(judge.probs(declared, rows), rows)

    def objective(trial: optuna.Trial) -> float:
        params = {p.name: trial.suggest_float(p.name, p.low, p.high) for p in spec}
        probs = judge.probs(params, rows)
        t = judge.terms(probs, rows)
        lift = mean_interval(t - reference, SELECTION_ALPHA)
        guard = judge.guard(probs, rows)
        excess = _excess(bp, guard)
        trial.set_user_attr("value", float(t.mean()))
        trial.set_user_attr("lift", lift.value)
        trial.set_user_attr("constraints", [excess[g.label] for g in bp.objective.guardrails])
        for g in bp.objective.guardrails:  # the sampler prefers trials where all are <= 0
            trial.set_constraint(f"guardrail_{g.label}", excess[g.label])
        trial.set_user_attr("guardrails", _guard_values(bp, guard))
        return lift.ci_low if np.isfinite(lift.ci_low) else 0.0

    sampler = optuna.samplers.TPESampler(seed=seed, n_startup_trials=min(10, n_trials))
    study = optuna.create_study(direction="maximize", sampler=sampler)
    study.enqueue_trial(declared)
    study.optimize(objective, n_trials=n_trials)
    trials, best, best_key = [], None, None
    for t in study.trials:
        if t.value is None:
            continue
        feasible = all(c <= 0 for c in t.user_attrs["constraints"])
        trials.append({"number": t.number, "value": t.user_attrs["value"], "lift_low": t.value,
                       "lift": t.user_attrs["lift"], "feasible": float(feasible), **t.params,
                       **{f"guardrail_{k}": v for k, v in t.user_attrs["guardrails"].items()}})
        key = (feasible, t.value, t.user_attrs["value"])
        if best_key is None or key > best_key:
            best, best_key = t, key
    assert best is not None
    if best.number != 0 and best_key is not None and best_key[1] <= 0 and trials[0]["feasible"]:
        best = study.trials[0]  # nothing beats the declared values with confidence
    if best_key is not None and not best_key[0]:  # nothing feasible: the least violating
        best = min((t for t in study.trials if t.value is not None), key=lambda t: max(t.user_attrs["constraints"] or [0]))
    return {k: float(v) for k, v in best.params.items()}, trials


def tune_policy(
    bp: Blueprint,
    data: LoggedData,
    folds: np.ndarray,
    *,
    seed: int = 0,
    n_trials: int | None = None,
    mixing: Mixing | None = None,
) -> TuningResult:
    """Tune the policy parameters on cross-fitted data (``data.scores`` out of fold,
    ``folds`` the fold of each example) and decide whether the tuned values replace the
    declared ones. ``mixing``: the exploration and experiment the policy will be served with."""
    dr = DRScores.from_logged(data)
    judge = _Judge(bp, data, dr, mixing)
    declared = dict(bp.policy.values)
    n_trials = n_trials or bp.policy.trials
    declared_probs = judge.probs(declared)
    declared_guard = judge.guard(declared_probs)
    declared_ok = all(v <= 0 for v in _excess(bp, declared_guard).values())

    def result(params: dict[str, float], accepted: bool, reason: str, tuned: dict[str, float], **kw: Any) -> TuningResult:
        probs = declared_probs if params == declared else judge.probs(params)
        guard = judge.guard(probs)
        greedy = build_policy(bp, params).choose(judge.scores)
        onehot = np.zeros_like(probs)
        onehot[np.arange(len(greedy)), greedy] = 1.0
        return TuningResult(params=params, accepted=accepted, reason=reason, declared=declared, tuned=tuned,
                            value=float(judge.terms(probs).mean()), guardrails=_guard_values(bp, guard),
                            feasible=all(v <= 0 for v in _excess(bp, guard).values()),
                            greedy_value=float(judge.terms(onehot).mean()), **kw)

    if not bp.policy.parameters:
        return result(declared, False, "the blueprint declares no tunable parameters", declared)

    # held out: each fold judged with the parameters searched on the other folds
    n = data.n
    held = np.zeros(n)
    held_guard = {g.label: (np.zeros(n), np.zeros(n)) for g in bp.objective.guardrails}
    fold_params: list[dict[str, float]] = []
    for j in np.unique(folds):
        test = folds == j
        train = ~test
        if train.sum() < 2:
            continue
        params_j, _ = _search(judge, np.flatnonzero(train), declared, n_trials, seed + int(j) + 1)
        fold_params.append(params_j)
        probs_j = judge.probs(params_j, np.flatnonzero(test))
        held[test] = judge.terms(probs_j, np.flatnonzero(test)) - judge.terms(declared_probs[test], np.flatnonzero(test))
        for label, (v, inc) in judge.guard(probs_j, np.flatnonzero(test)).items():
            held_guard[label][0][test] = v
            held_guard[label][1][test] = inc
    confidence = bp.policy.min_improvement_confidence
    gain = mean_interval(held, 2 * (1 - confidence))
    held_excess = {label: guardrail_from_terms(bp, label, v, inc).excess for label, (v, inc) in held_guard.items()}
    held_ok = all(e <= 0 for e in held_excess.values())
    declared_excess = _excess(bp, declared_guard)
    improvement = {"value": gain.value, "ci_low": gain.ci_low, "ci_high": gain.ci_high, "n": float(gain.n),
                   "confidence": confidence}

    tuned, trials = _search(judge, None, declared, n_trials, seed)
    tuned_ok = all(v <= 0 for v in _excess(bp, judge.guard(judge.probs(tuned))).values())
    kw = {"improvement": improvement, "fold_params": fold_params, "trials": trials}
    gain_text = f"held-out gain {gain.value:+.5f}, lower {confidence:.0%} bound {gain.ci_low:+.5f}"

    def keep(why: str) -> TuningResult:
        return result(declared, False, f"kept the declared parameters: {why} ({gain_text})", tuned, **kw)

    def accept(why: str) -> TuningResult:
        return result(tuned, True, f"tuned parameters accepted: {why}", tuned, **kw)

    if tuned == declared:
        return keep("the search found no gain it could support")
    if declared_ok:
        if not tuned_ok or not held_ok:
            return keep("the tuned ones break a guardrail on held-out data")
        if gain.ci_low > 0:
            return accept(gain_text)
        return keep("the gain of tuning is not significant")
    # the declared parameters break a guardrail: keeping it comes first
    breach = ", ".join(f"{label} {declared_excess[label]:+.5f} past its bound, tuned {held_excess[label]:+.5f}"
                       for label in declared_excess if declared_excess[label] > 0)
    if tuned_ok and held_ok:
        return accept(f"the declared ones break a guardrail that the tuned ones keep ({breach}; {gain_text})")
    if _less_broken(held_excess, declared_excess):
        return accept(f"the declared ones break a guardrail and the tuned ones less, held out ({breach}; {gain_text})")
    return keep(f"the declared ones break a guardrail and the tuned ones do no better ({breach})")


def _less_broken(tuned: dict[str, float], declared: dict[str, float]) -> bool:
    """Every guardrail kept or broken by less than the declared parameters break it, and
    at least one broken guardrail improved."""
    return all(tuned[k] <= max(declared[k], 0.0) for k in declared) and any(
        tuned[k] < declared[k] for k in declared if declared[k] > 0)


def pareto_mask(values: np.ndarray, costs: np.ndarray) -> np.ndarray:
    """Trials not dominated in (higher value, lower guardrail cost)."""
    n = len(values)
    mask = np.ones(n, dtype=bool)
    for i in range(n):
        dominated = (values >= values[i]) & (costs <= costs[i]) & ((values > values[i]) | (costs < costs[i]))
        mask[i] = not dominated.any()
    return mask
