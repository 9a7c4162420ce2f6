"""Score every action of many rows with trained label models (LightGBM boosters)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def action_scores(models: Mapping[str, Any], x: np.ndarray, n_actions: int) -> dict[str, np.ndarray]:
    """(n, K) prediction per label: each row scored as if each action were taken."""
    n = x.shape[0]
    grid = np.empty((n * n_actions, x.shape[1] + 1), dtype=np.float64)
    grid[:, :-1] = np.repeat(x, n_actions, axis=0)
    grid[:, -1] = np.tile(np.arange(n_actions, dtype=np.float64), n)
    return {label: np.asarray(m.predict(grid), dtype=np.float64).reshape(n, n_actions) for label, m in models.items()}
