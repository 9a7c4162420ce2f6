"""Doubly robust scores: one estimate per example and action, from which the value of any
policy, the lift of one policy over another and every guardrail follow as means.

For example ``i`` with logged action ``a_i`` (logged with probability ``p_i``), observed
label ``y_i`` and a reward model's predictions ``m_i(a)`` for every action::

    G_i(a) = m_i(a) + 1[a == a_i] / p_i * (y_i - m_i(a_i))

The value of a policy ``pi`` is ``mean_i sum_a pi(a | x_i) G_i(a)`` -- the DR estimator --
with a normal interval from the per-example terms. When ``m_i`` comes from models that
never saw example ``i`` (cross-fitting), the terms of different policies are evaluated on
the same footing, and the lift of one over another is a paired mean of differences.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.evaluation.policy_value import LoggedData
from looper_pipelines.ope import PolicyValue


def mean_interval(terms: np.ndarray, alpha: float, estimator: str = "dr") -> PolicyValue:
    """Mean of per-example terms with a two-sided ``1 - alpha`` normal interval."""
    n = int(terms.shape[0])
    if n == 0:
        return PolicyValue(float("nan"), float("nan"), float("nan"), 0, estimator, float("nan"))
    m = float(terms.mean())
    se = float(terms.std(ddof=1) / np.sqrt(n)) if n > 1 else float("inf")
    z = NormalDist().inv_cdf(1 - alpha / 2)
    return PolicyValue(m, m - z * se, m + z * se, n, estimator, se)


@dataclass(frozen=True)
class GuardrailEstimate:
    """A guardrail under a policy: the label's increase over its baseline action and/or
    its mean, and how far it is past the blueprint's bound (> 0: broken)."""

    label: str
    increase: PolicyValue | None
    value: PolicyValue
    excess: float

    @property
    def holds(self) -> bool:
        return bool(np.isfinite(self.excess) and self.excess <= 0)

    def describe(self, max_increase: float | None, max_value: float | None) -> str:
        parts = []
        if max_increase is not None and self.increase is not None:
            parts.append(f"increase {self.increase.value:+.5f} (bound {max_increase:+.5f})")
        if max_value is not None:
            parts.append(f"mean {self.value.value:.5f} (cap {max_value:.5f})")
        return ", ".join(parts)


@dataclass(frozen=True)
class DRScores:
    """Per-example, per-action doubly robust scores of every label (n, K)."""

    gamma: dict[str, np.ndarray]

    @classmethod
    def from_logged(cls, data: LoggedData) -> DRScores:
        n = data.n
        rows = np.arange(n)
        inv_p = 1.0 / np.asarray(data.propensity, dtype=np.float64)
        gamma: dict[str, np.ndarray] = {}
        for label, m in data.scores.items():
            if label not in data.labels:
                continue
            m = np.asarray(m, dtype=np.float64)
            g = m.copy()
            g[rows, data.action] += inv_p * (np.asarray(data.labels[label], dtype=np.float64) - m[rows, data.action])
            gamma[label] = g
        return cls(gamma)

    @property
    def n(self) -> int:
        return int(next(iter(self.gamma.values())).shape[0])

    def combined(self, weights: Mapping[str, float]) -> np.ndarray:
        """(n, K) scores of a linear objective."""
        out = np.zeros_like(next(iter(self.gamma.values())))
        for label, w in weights.items():
            if w:
                out = out + w * self.gamma[label]
        return out

    def terms(self, probs: np.ndarray, weights: Mapping[str, float], rows: np.ndarray | None = None) -> np.ndarray:
        """Per-example terms of a policy's value. In every method ``rows`` selects examples
        (all when None) and ``probs`` holds the policy's (m, K) probabilities for them."""
        g = self.combined(weights)
        if rows is not None:
            g = g[rows]
        return (probs * g).sum(axis=1)

    def value(self, probs: np.ndarray, weights: Mapping[str, float], alpha: float = 0.05,
              rows: np.ndarray | None = None) -> PolicyValue:
        return mean_interval(self.terms(probs, weights, rows), alpha)

    def lift(self, probs: np.ndarray, baseline: np.ndarray, weights: Mapping[str, float], alpha: float = 0.05,
             rows: np.ndarray | None = None) -> PolicyValue:
        """value(probs) - value(baseline), paired over the same examples."""
        return mean_interval(self.terms(probs - baseline, weights, rows), alpha)

    def guardrails(self, bp: Blueprint, probs: np.ndarray, alpha: float = 0.05,
                   rows: np.ndarray | None = None) -> dict[str, GuardrailEstimate]:
        return {g.label: guardrail_from_terms(bp, g.label, *self.guardrail_terms(bp, g.label, probs, rows), alpha)
                for g in bp.objective.guardrails}

    def guardrail_terms(self, bp: Blueprint, label: str, probs: np.ndarray,
                        rows: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Per-example terms of a guardrail label: its value under ``probs`` and its
        increase over the guardrail's baseline action."""
        g = next(x for x in bp.objective.guardrails if x.label == label)
        gam = self.gamma[label] if rows is None else self.gamma[label][rows]
        value = (probs * gam).sum(axis=1)
        base = bp.decision.actions.index(bp.guardrail_baseline(g))
        return value, value - gam[:, base]


def guardrail_from_terms(bp: Blueprint, label: str, value_terms: np.ndarray, increase_terms: np.ndarray,
                         alpha: float = 0.05) -> GuardrailEstimate:
    g = next(x for x in bp.objective.guardrails if x.label == label)
    value = mean_interval(value_terms, alpha)
    increase = mean_interval(increase_terms, alpha) if g.max_increase is not None else None
    excess = -np.inf
    if g.max_increase is not None and increase is not None:
        excess = max(excess, increase.value - g.max_increase)
    if g.max_value is not None:
        excess = max(excess, value.value - g.max_value)
    return GuardrailEstimate(label, increase, value, float(excess))
