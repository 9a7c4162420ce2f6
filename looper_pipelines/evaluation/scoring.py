"""Score every action of many rows with trained label models (LightGBM boosters)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from looper_pipelines.features import action_grid


def action_scores(models: Mapping[str, Any], x: np.ndarray, n_actions: int) -> dict[str, np.ndarray]:
    """(n, K) prediction per label: each row scored as if each action were taken."""
    n = x.shape[0]
    grid = action_grid(x, n_actions)
    return {label: np.asarray(m.predict(grid), dtype=np.float64).reshape(n, n_actions) for label, m in models.items()}
