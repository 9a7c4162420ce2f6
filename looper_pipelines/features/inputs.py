"""The inputs of every label model: the blueprint's features in order, then the action taken
(its index, categorical). The one place that says so, for training, evaluation, publication
and serving."""

from __future__ import annotations

import numpy as np

from looper_pipelines.blueprints.model import Blueprint

ACTION_INPUT = "action"


def input_names(bp: Blueprint) -> list[str]:
    return [*bp.feature_names, ACTION_INPUT]


def categorical_inputs(bp: Blueprint) -> list[str]:
    return [f.name for f in bp.features if f.type == "category"] + [ACTION_INPUT]


def with_action(x: np.ndarray, action: np.ndarray) -> np.ndarray:
    """(n, F + 1): each row of features with the action it took."""
    return np.column_stack([x, np.asarray(action, dtype=np.float64)])


def action_grid(x: np.ndarray, n_actions: int) -> np.ndarray:
    """(n * K, F + 1): each row of features once per action, actions 0..K-1 in turn, so a
    model's predictions reshape to (n, K)."""
    n = x.shape[0]
    grid = np.empty((n * n_actions, x.shape[1] + 1), dtype=np.float64)
    grid[:, :-1] = np.repeat(x, n_actions, axis=0)
    grid[:, -1] = np.tile(np.arange(n_actions, dtype=np.float64), n)
    return grid
