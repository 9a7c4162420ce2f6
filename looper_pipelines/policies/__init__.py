"""Decision policies: how predicted labels become an action.

A policy sees, for n rows, a score matrix (n, K) per predicted label (the model's
prediction of that label if each of the K actions were taken) and returns the greedy action
index per row. Exploration and experiments are mixed in by the decision engine.
"""

from looper_pipelines.policies.mixture import (
    Mixing,
    arm_probabilities,
    deployed_probabilities,
    mixture_probabilities,
)
from looper_pipelines.policies.policy import (
    CATE_KEY,
    CateThresholdPolicy,
    DecisionPolicy,
    ThresholdPolicy,
    WeightedValuePolicy,
    build_policy,
)

__all__ = [
    "CATE_KEY",
    "CateThresholdPolicy",
    "DecisionPolicy",
    "Mixing",
    "ThresholdPolicy",
    "WeightedValuePolicy",
    "arm_probabilities",
    "build_policy",
    "deployed_probabilities",
    "mixture_probabilities",
]
