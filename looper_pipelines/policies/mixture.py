"""The deployed policy's probability of each action: the greedy choice mixed with the
blueprint's exploration and randomised experiment (what decisions are logged with, and
what off-policy evaluation scores a policy by)."""

from __future__ import annotations

import numpy as np

from looper_pipelines.blueprints.model import Blueprint


def arm_probabilities(bp: Blueprint) -> np.ndarray:
    """(K,) probability of each action inside the experiment (zeros without one)."""
    actions = list(bp.decision.actions)
    p = np.zeros(len(actions))
    if bp.experiment:
        for arm in bp.experiment.arms:
            p[actions.index(arm.action)] += arm.probability
    return p


def deployed_probabilities(bp: Blueprint, greedy: np.ndarray) -> np.ndarray:
    """(n, K) probabilities when ``greedy`` actions are served with the blueprint's
    exploration and experiment mixed in."""
    exp = bp.experiment
    return mixture_probabilities(
        greedy,
        len(bp.decision.actions),
        bp.decision.exploration.epsilon,
        exp.share if exp else 0.0,
        arm_probabilities(bp),
    )


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
