"""The three policy kinds a blueprint can declare, vectorised over rows."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np

from looper_pipelines.blueprints.model import Blueprint

# score key of a dedicated CATE model's effect estimate (n, K): effect of each action vs control
CATE_KEY = "cate"

Scores = Mapping[str, np.ndarray]


@dataclass(frozen=True)
class DecisionPolicy:
    """Base: ``kind`` binary or multi_action, ``treat``/``control`` indices for binary."""

    multi_action: bool
    treat: int
    control: int
    params: dict[str, float] = field(default_factory=dict)

    def value(self, scores: Scores) -> np.ndarray:  # (n, K)
        raise NotImplementedError

    def threshold(self) -> float:
        return float(self.params.get("threshold", 0.0))

    def choose(self, scores: Scores) -> np.ndarray:
        """Greedy action index per row."""
        v = self.value(scores)
        if self.multi_action:
            return np.argmax(v, axis=1)
        gain = v[:, self.treat] - v[:, self.control]
        return np.where(gain > self.threshold(), self.treat, self.control)


@dataclass(frozen=True)
class ThresholdPolicy(DecisionPolicy):
    """Treat when the score of one label (treated minus control) exceeds ``threshold``."""

    score_label: str = "click"

    def value(self, scores: Scores) -> np.ndarray:
        return np.asarray(scores[self.score_label], dtype=float)


@dataclass(frozen=True)
class WeightedValuePolicy(DecisionPolicy):
    """value(a) = sum_l weight_l * predicted_l(a); weights from the objective, overridable
    by parameters named ``weight_<label>``."""

    weights: dict[str, float] = field(default_factory=dict)

    def effective_weights(self) -> dict[str, float]:
        w = dict(self.weights)
        for k, v in self.params.items():
            if k.startswith("weight_"):
                w[k.removeprefix("weight_")] = float(v)
        return w

    def value(self, scores: Scores) -> np.ndarray:
        total: np.ndarray | None = None
        for label, w in self.effective_weights().items():
            if w == 0.0:
                continue
            term = w * np.asarray(scores[label], dtype=float)
            total = term if total is None else total + term
        if total is None:
            first = next(iter(scores.values()))
            return np.zeros_like(np.asarray(first, dtype=float))
        return total


@dataclass(frozen=True)
class CateThresholdPolicy(WeightedValuePolicy):
    """Treat when the estimated effect on the objective exceeds ``cost``. The effect comes
    from a dedicated CATE model when the scores carry one, else from the difference of the
    outcome models' weighted predictions."""

    def choose(self, scores: Scores) -> np.ndarray:
        if CATE_KEY in scores:
            eff = np.asarray(scores[CATE_KEY], dtype=float)
            effect = eff[:, self.treat] - eff[:, self.control] if eff.ndim == 2 else eff
        else:
            v = self.value(scores)
            effect = v[:, self.treat] - v[:, self.control]
        cost = float(self.params.get("cost", self.params.get("threshold", 0.0)))
        return np.where(effect > cost, self.treat, self.control)


def build_policy(bp: Blueprint, params: Mapping[str, float] | None = None) -> DecisionPolicy:
    """The blueprint's policy with ``params`` (tuned values) over the blueprint's defaults."""
    p = dict(bp.policy.values)
    if params:
        p.update({k: float(v) for k, v in params.items()})
    multi = bp.decision.kind == "multi_action"
    actions = bp.decision.actions
    treat = actions.index(bp.decision.treatment) if not multi else 0
    control = actions.index(bp.decision.control) if not multi else 0
    common = {"multi_action": multi, "treat": treat, "control": control, "params": p}
    kind = bp.policy.kind
    if kind == "threshold":
        return ThresholdPolicy(**common, score_label=bp.score_label)
    weights = bp.objective.weights
    if kind == "weighted_value":
        return WeightedValuePolicy(**common, weights=weights)
    return CateThresholdPolicy(**common, weights=weights)


def mixture_probabilities(
    greedy: np.ndarray,
    n_actions: int,
    epsilon: float,
    experiment_share: float = 0.0,
    arm_probabilities: np.ndarray | None = None,
) -> np.ndarray:
    """Probability of each action under the full stochastic policy (n, K):
    ``share * arms + (1 - share) * ((1 - eps) * onehot(greedy) + eps / K)``."""
    n = greedy.shape[0]
    probs = np.full((n, n_actions), epsilon / n_actions)
    probs[np.arange(n), greedy] += 1.0 - epsilon
    if experiment_share > 0 and arm_probabilities is not None:
        probs = (1.0 - experiment_share) * probs + experiment_share * arm_probabilities[None, :]
    return probs
