"""The three policy kinds a blueprint can declare: vectorised over rows (``choose``, for
evaluation and batches) and on one row in plain Python floats (``choose_one``, for the
request path). Both give the same action for the same scores: the arithmetic is the same
IEEE double operations in the same order."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np

from looper_pipelines.blueprints.model import Blueprint

# score key of a dedicated CATE model's effect estimate (n, K): effect of each action vs control
CATE_KEY = "cate"

Scores = Mapping[str, np.ndarray]
RowScores = Mapping[str, Sequence[float]]  # K floats per label, one row


def _argmax(values: Sequence[float]) -> int:
    """Index of the first maximum, as ``np.argmax`` (a NaN counts as the maximum)."""
    best, top = 0, values[0]
    if top != top:
        return 0
    for i in range(1, len(values)):
        x = values[i]
        if x != x:
            return i
        if x > top:
            best, top = i, x
    return best


@dataclass(frozen=True)
class DecisionPolicy:
    """Base: ``kind`` binary or multi_action, ``treat``/``control`` indices for binary,
    ``default`` the default action's index (a multi-action policy leaves it only for a
    value gain above ``threshold``)."""

    multi_action: bool
    treat: int
    control: int
    params: dict[str, float] = field(default_factory=dict)
    default: int = 0

    def value(self, scores: Scores) -> np.ndarray:  # (n, K)
        raise NotImplementedError

    def value_one(self, scores: RowScores) -> Sequence[float]:  # K values of one row
        raise NotImplementedError

    def threshold(self) -> float:
        return float(self.params.get("threshold", 0.0))

    @cached_property
    def _threshold(self) -> float:
        return self.threshold()

    def choose(self, scores: Scores) -> np.ndarray:
        """Greedy action index per row."""
        v = self.value(scores)
        if self.multi_action:
            best = np.argmax(v, axis=1)
            gain = v[np.arange(v.shape[0]), best] - v[:, self.default]
            return np.where(gain > self.threshold(), best, self.default)
        gain = v[:, self.treat] - v[:, self.control]
        return np.where(gain > self.threshold(), self.treat, self.control)

    def choose_one(self, scores: RowScores) -> int:
        """Greedy action index of one row (``choose`` on a batch of one, without numpy)."""
        v = self.value_one(scores)
        if self.multi_action:
            best = _argmax(v)
            return best if v[best] - v[self.default] > self._threshold else self.default
        return self.treat if v[self.treat] - v[self.control] > self._threshold else self.control


@dataclass(frozen=True)
class ThresholdPolicy(DecisionPolicy):
    """Treat when the score of one label (treated minus control) exceeds ``threshold``."""

    score_label: str = "click"

    def value(self, scores: Scores) -> np.ndarray:
        return np.asarray(scores[self.score_label], dtype=float)

    def value_one(self, scores: RowScores) -> Sequence[float]:
        return scores[self.score_label]


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

    @cached_property
    def _terms(self) -> tuple[tuple[str, float], ...]:
        return tuple((label, w) for label, w in self.effective_weights().items() if w != 0.0)

    def value_one(self, scores: RowScores) -> Sequence[float]:
        total: list[float] | None = None
        for label, w in self._terms:
            term = [w * x for x in scores[label]]
            total = term if total is None else [a + b for a, b in zip(total, term, strict=True)]
        if total is None:
            return [0.0] * len(next(iter(scores.values())))
        return total

    def choose_one(self, scores: RowScores) -> int:
        if self.multi_action:
            return super().choose_one(scores)
        # binary: only the two values the gain needs, summed in the same order
        t, c = self.treat, self.control
        vt = vc = 0.0
        first = True
        for label, w in self._terms:
            s = scores[label]
            if first:
                vt, vc, first = w * s[t], w * s[c], False
            else:
                vt, vc = vt + w * s[t], vc + w * s[c]
        return t if vt - vc > self._threshold else c

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
        return np.where(effect > self._cost, self.treat, self.control)

    @cached_property
    def _cost(self) -> float:
        return float(self.params.get("cost", self.params.get("threshold", 0.0)))

    def choose_one(self, scores: RowScores) -> int:
        eff = scores.get(CATE_KEY)
        v = eff if eff is not None else self.value_one(scores)
        effect = v[self.treat] - v[self.control]
        return self.treat if effect > self._cost else self.control


def build_policy(bp: Blueprint, params: Mapping[str, float] | None = None) -> DecisionPolicy:
    """The blueprint's policy with ``params`` (tuned values) over the blueprint's defaults."""
    p = dict(bp.policy.values)
    if params:
        p.update({k: float(v) for k, v in params.items()})
    multi = bp.decision.kind == "multi_action"
    actions = bp.decision.actions
    treat = actions.index(bp.decision.treatment) if not multi else 0
    control = actions.index(bp.decision.control) if not multi else 0
    common = {"multi_action": multi, "treat": treat, "control": control, "params": p,
              "default": actions.index(bp.decision.default_action)}
    kind = bp.policy.kind
    if kind == "threshold":
        return ThresholdPolicy(**common, score_label=bp.score_label)
    weights = bp.objective.weights
    if kind == "weighted_value":
        return WeightedValuePolicy(**common, weights=weights)
    return CateThresholdPolicy(**common, weights=weights)
