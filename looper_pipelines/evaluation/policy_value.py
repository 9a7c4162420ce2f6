"""Off-policy value of a decision policy on logged data (IPS, SNIPS, DR, switch-DR)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.ope import PolicyValue, estimate_policy_value
from looper_pipelines.policies import DecisionPolicy, Mixing, build_policy, deployed_probabilities

ESTIMATORS = ("ips", "snips", "dr", "switch_dr")


@dataclass
class LoggedData:
    """What the off-policy estimators need from logged decisions."""

    action: np.ndarray  # (n,)
    propensity: np.ndarray  # (n,)
    labels: dict[str, np.ndarray]  # observed labels (n,)
    scores: dict[str, np.ndarray]  # model predictions (n, K) per label

    @property
    def n(self) -> int:
        return int(self.action.shape[0])


def objective_weights(bp: Blueprint) -> dict[str, float]:
    return bp.objective.weights


def reward(weights: Mapping[str, float], labels: Mapping[str, np.ndarray]) -> np.ndarray:
    return sum(w * np.asarray(labels[k], dtype=float) for k, w in weights.items())  # type: ignore[return-value]


def reward_hat(weights: Mapping[str, float], scores: Mapping[str, np.ndarray]) -> np.ndarray:
    """(n, K) predicted reward of each action."""
    return sum(w * np.asarray(scores[k], dtype=float) for k, w in weights.items())  # type: ignore[return-value]


def policy_probabilities(
    bp: Blueprint, policy: DecisionPolicy, scores: Mapping[str, np.ndarray], mixing: Mixing | None = None
) -> np.ndarray:
    """(n, K) probabilities of the policy as deployed: greedy choice mixed with the
    blueprint's exploration and experiment (as ``mixing`` says; default: the cold start's)."""
    return deployed_probabilities(bp, policy.choose(scores), mixing)


def _rows(x: np.ndarray, a: np.ndarray) -> np.ndarray:
    return x[np.arange(x.shape[0]), a]


def estimate_value(
    data: LoggedData,
    target: np.ndarray,
    weights: Mapping[str, float],
    estimator: str = "dr",
    alpha: float = 0.05,
) -> PolicyValue:
    """Value of a target policy given as (n, K) probabilities, for a linear objective."""
    r = reward(weights, data.labels)
    rh = reward_hat(weights, data.scores)
    return estimate_policy_value(
        r,
        data.propensity,
        _rows(target, data.action),
        estimator=estimator,
        reward_hat=_rows(rh, data.action),
        target_reward_hat=(target * rh).sum(axis=1),
        alpha=alpha,
    )


def evaluate_policy(
    bp: Blueprint, data: LoggedData, params: Mapping[str, float] | None = None, alpha: float = 0.05,
    mixing: Mixing | None = None,
) -> dict[str, PolicyValue]:
    """The blueprint's policy (with ``params``, served with ``mixing``) under every
    estimator, plus the logged policy's observed value under the key ``logged``."""
    target = policy_probabilities(bp, build_policy(bp, params), data.scores, mixing)
    w = objective_weights(bp)
    out = {name: estimate_value(data, target, w, name, alpha) for name in ESTIMATORS}
    r = reward(w, data.labels)
    se = float(r.std(ddof=1) / np.sqrt(max(len(r), 1))) if len(r) > 1 else float("nan")
    z = 1.959963984540054
    out["logged"] = PolicyValue(float(r.mean()), float(r.mean() - z * se), float(r.mean() + z * se), len(r), "logged", se)
    return out


def uniform_random_value(
    bp: Blueprint, labels: Mapping[str, np.ndarray], propensity: np.ndarray, estimator: str = "snips", alpha: float = 0.05
) -> PolicyValue:
    """Value of choosing every action uniformly at random, from the logged data alone."""
    r = reward(objective_weights(bp), labels)
    k = len(bp.decision.actions)
    return estimate_policy_value(r, propensity, np.full(r.shape[0], 1.0 / k), estimator=estimator, alpha=alpha)
