"""The deployed policy's probability of each action: the greedy choice mixed with the
blueprint's exploration and randomised experiment (what decisions are logged with, and
what off-policy evaluation scores a policy by)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from looper_pipelines.blueprints.model import Blueprint


@dataclass(frozen=True)
class Mixing:
    """How much randomisation a deployment mixes into its greedy choice: the exploration
    rate and the experiment's share of traffic (both decay with the examples a model was
    trained on, as the blueprint says)."""

    epsilon: float
    experiment_share: float

    @classmethod
    def for_examples(cls, bp: Blueprint, n_examples: int | float) -> Mixing:
        exp = bp.experiment
        return cls(bp.decision.exploration.epsilon_for(n_examples), exp.share_for(n_examples) if exp else 0.0)

    @classmethod
    def cold_start(cls, bp: Blueprint) -> Mixing:
        return cls.for_examples(bp, 0)


def arm_probabilities(bp: Blueprint) -> np.ndarray:
    """(K,) probability of each action inside the experiment (zeros without one)."""
    actions = list(bp.decision.actions)
    p = np.zeros(len(actions))
    if bp.experiment:
        for arm in bp.experiment.arms:
            p[actions.index(arm.action)] += arm.probability
    return p


def deployed_probabilities(bp: Blueprint, greedy: np.ndarray, mixing: Mixing | None = None) -> np.ndarray:
    """(n, K) probabilities when ``greedy`` actions are served with the blueprint's
    exploration and experiment mixed in (as ``mixing`` says; default: the cold start's)."""
    m = mixing or Mixing.cold_start(bp)
    return mixture_probabilities(greedy, len(bp.decision.actions), m.epsilon, m.experiment_share,
                                 arm_probabilities(bp))


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
