"""The decision path for one use case: validate, score, apply the policy, explore."""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol

import numpy as np

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.client.features import FeatureEncoder
from looper_pipelines.policies import (
    DecisionPolicy,
    Mixing,
    arm_probabilities,
    build_policy,
    deployed_probabilities,
)


class Scorer(Protocol):
    """A deployed model: predicted labels for every action of one or many rows."""

    labels: list[str]

    def score_row(self, row: list[float]) -> dict[str, list[float]]:
        """K floats per label for one encoded row."""
        ...

    def score_many(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        """(n, K) per label for encoded rows (n, F)."""
        ...


@dataclass(frozen=True)
class Deployment:
    """What serves a use case: the model (None on a cold start), the policy and versions.
    Swapped as one reference, so a decision never mixes two deployments."""

    policy: DecisionPolicy
    policy_version: str
    scorer: Scorer | None = None
    model_version: str | None = None
    policy_params: dict[str, float] = field(default_factory=dict)
    mixing: Mixing | None = None  # exploration and experiment; None: the blueprint's cold start


class Choice(NamedTuple):
    """One decision before it is logged (a tuple: built on every request)."""

    action_index: int
    propensity: float
    scores: dict[str, list[float]]
    explored: bool
    experiment_arm: str | None
    assignment_probability: float | None
    deployment: Deployment


class DecisionEngine:
    def __init__(self, blueprint: Blueprint, rng: random.Random | None = None) -> None:
        self.blueprint = blueprint
        self.blueprint_version = blueprint.version
        self.encoder = FeatureEncoder(blueprint)
        d = blueprint.decision
        self.actions = list(d.actions)
        self.n_actions = len(self.actions)
        self.default_index = self.actions.index(d.default_action)
        self.cold_start_mixing = Mixing.cold_start(blueprint)
        exp = blueprint.experiment
        self.arms = [(a.name, self.actions.index(a.action), a.probability) for a in exp.arms] if exp else []
        # per action, as plain floats for the request path
        self.arm_action_probabilities = arm_probabilities(blueprint).tolist()
        self._rng = rng or random.Random()
        self.deployment = self.cold_start()

    def cold_start(self) -> Deployment:
        bp = self.blueprint
        return Deployment(policy=build_policy(bp), policy_version=bp.policy_version, mixing=self.cold_start_mixing)

    # -- one decision ---------------------------------------------------------------------
    def greedy(self, dep: Deployment, row: list[float]) -> tuple[int, dict[str, list[float]]]:
        if dep.scorer is None:
            return self.default_index, {}
        scores = dep.scorer.score_row(row)
        return dep.policy.choose_one(scores), scores

    def choose(self, features: Mapping[str, Any]) -> tuple[dict[str, Any], Choice]:
        normalised, row = self.encoder.normalise_encode(features)
        dep = self.deployment
        greedy, scores = self.greedy(dep, row)
        k = self.n_actions
        mixing = dep.mixing or self.cold_start_mixing
        eps = mixing.epsilon
        share = mixing.experiment_share
        rnd = self._rng.random
        arm_name: str | None = None
        arm_prob: float | None = None
        explored = False
        if share > 0.0 and rnd() < share:
            u = rnd()
            acc = 0.0
            name, action, p = self.arms[-1]
            for name_i, action_i, p_i in self.arms:
                acc += p_i
                if u < acc:
                    name, action, p = name_i, action_i, p_i
                    break
            arm_name, arm_prob = name, p
        elif eps > 0.0 and rnd() < eps:
            action = int(rnd() * k) % k
            explored = True
        else:
            action = greedy
        propensity = (1.0 - share) * (eps / k + (1.0 - eps if action == greedy else 0.0))
        propensity += share * self.arm_action_probabilities[action]
        return normalised, Choice(action, propensity, scores, explored, arm_name, arm_prob, dep)

    # -- many rows, no logging ------------------------------------------------------------
    def greedy_many(self, rows: np.ndarray, dep: Deployment | None = None) -> np.ndarray:
        dep = dep or self.deployment
        if dep.scorer is None:
            return np.full(rows.shape[0], self.default_index, dtype=np.int64)
        return dep.policy.choose(dep.scorer.score_many(rows))

    def probabilities(self, rows: list[Mapping[str, Any]], dep: Deployment | None = None,
                      greedy: bool = False) -> np.ndarray:
        """(n, K) probabilities of each action under the full stochastic policy (``greedy``:
        the policy's own choice, without exploration and experiment)."""
        dep = dep or self.deployment
        x = np.asarray(self.encoder.encode_many(rows), dtype=np.float64).reshape(len(rows), -1)
        choice = self.greedy_many(x, dep)
        if greedy:
            out = np.zeros((len(rows), self.n_actions))
            out[np.arange(len(rows)), choice] = 1.0
            return out
        return deployed_probabilities(self.blueprint, choice, dep.mixing)
