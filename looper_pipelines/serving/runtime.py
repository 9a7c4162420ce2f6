"""Load the published champion for each use case and hot-swap it into the decision engines.

Published layout (written only by the export step, see ``publish.py``)::

    <home>/serving/<use_case>/current.json          {"version": "<id>"}   (atomic rename)
    <home>/serving/<use_case>/versions/<id>/deployment.json
    <home>/serving/<use_case>/versions/<id>/models/<label>/   one compiled model per label

Each model takes the blueprint's features followed by the action index, so scoring a row
for all K actions is one batch of K rows. Request-path module: no orchestration,
tracking or training imports.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from looper_pipelines.home import HomeLayout
from looper_pipelines.policies import Mixing, build_policy

try:  # every label's model on one row in one call (setup.py builds it with a C compiler)
    from looper_pipelines.serving import _rowcall
except ImportError:  # pragma: no cover - not built: score_row in Python
    _rowcall = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

CURRENT = "current.json"
_ROW_CALLS_UP_TO = 16  # actions scored with per-row calls rather than one batch call
DEPLOYMENT = "deployment.json"


class ActionScorer:
    """Scores every action of a row with one compiled model per label."""

    def __init__(self, models: Mapping[str, Any], n_actions: int, n_features: int) -> None:
        self.models = dict(models)
        self.labels = list(self.models)
        self.n_actions = n_actions
        self.n_features = n_features
        self._actions = np.arange(n_actions, dtype=np.float64)
        self._action_values = self._actions.tolist()
        self._local = threading.local()
        # A few actions of one-output models: one direct library call per label scores
        # every action, in plain Python floats (the batch path's numpy set-up costs
        # several times as much).
        self._per_row = n_actions <= _ROW_CALLS_UP_TO and all(
            hasattr(m, "row_scorer") and getattr(m, "num_class", 1) == 1 for m in self.models.values()
        )
        self._row_scorers = (
            [(label, m.row_scorer(n_features, self._action_values)) for label, m in self.models.items()]
            if self._per_row
            else []
        )
        calls = [score for _, score in self._row_scorers]
        if calls and _rowcall is not None and all(type(c) is _rowcall.RowCall for c in calls):
            # the same, with the row filled once for all labels, in C
            self.score_row = _rowcall.RowScores(self.labels, calls, self._score_row)  # type: ignore[method-assign]

    def _grid(self) -> np.ndarray:
        g = getattr(self._local, "grid", None)
        if g is None:
            g = np.empty((self.n_actions, self.n_features + 1), dtype=np.float64)
            g[:, -1] = self._actions
            self._local.grid = g
        return g

    def score_row(self, row: list[float]) -> dict[str, list[float]]:
        """The prediction of each label for each action of one encoded row (K floats per
        label): the request path."""
        return self._score_row(row)

    def _score_row(self, row: list[float]) -> dict[str, list[float]]:
        if self._per_row:
            full = [*row, 0.0]  # the action column is set by the scorer
            return {label: score(full) for label, score in self._row_scorers}
        g = self._grid()
        g[:, :-1] = row
        return {label: np.asarray(m.predict(g), dtype=np.float64).reshape(self.n_actions).tolist()
                for label, m in self.models.items()}

    def score_many(self, rows: np.ndarray) -> dict[str, np.ndarray]:
        n = rows.shape[0]
        x = np.empty((n * self.n_actions, self.n_features + 1), dtype=np.float64)
        x[:, :-1] = np.repeat(rows, self.n_actions, axis=0)
        x[:, -1] = np.tile(self._actions, n)
        return {
            label: np.asarray(m.predict(x), dtype=np.float64).reshape(n, self.n_actions)
            for label, m in self.models.items()
        }


def current_version(layout: HomeLayout, use_case: str) -> str | None:
    try:
        return json.loads((layout.serving / use_case / CURRENT).read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def load_deployment(layout: HomeLayout, engine: Any, version: str) -> Any:
    """Build a ``Deployment`` from a published version (raises on a bad artifact)."""
    from looper_pipelines.client.engine import Deployment
    from looper_pipelines.serving.compiled import CompiledModel

    bp = engine.blueprint
    folder = layout.serving / bp.name / "versions" / version
    meta = json.loads((folder / DEPLOYMENT).read_text())
    if meta.get("lineage_version") != bp.lineage_version:
        raise ValueError(
            f"published version {version} was trained for blueprint lineage {meta.get('lineage_version')}, "
            f"but the blueprint now has lineage {bp.lineage_version}"
        )
    models = {label: CompiledModel.load(folder / rel) for label, rel in meta["models"].items()}
    params = {k: float(v) for k, v in meta.get("policy_params", {}).items()}
    cold = Mixing.cold_start(bp)
    mixing = Mixing(float(meta.get("exploration_epsilon", cold.epsilon)),
                    float(meta.get("experiment_share", cold.experiment_share)))
    return Deployment(
        policy=build_policy(bp, params),
        policy_version=meta["policy_version"],
        scorer=ActionScorer(models, engine.n_actions, len(bp.features)),
        model_version=str(meta["model_version"]),
        policy_params=params,
        mixing=mixing,
    )


class DeploymentWatcher:
    """Checks for a newly published champion at most every ``interval_s`` seconds and swaps
    it into the engine as one reference: decisions in flight finish on the old one."""

    def __init__(self, layout: HomeLayout, engines: Mapping[str, Any], interval_s: float = 1.0) -> None:
        self.layout = layout
        self.engines = engines
        self.interval_s = interval_s
        self._loaded: dict[str, str | None] = {}
        self._next = 0.0
        self._lock = threading.Lock()

    def maybe_refresh(self) -> None:
        if time.monotonic() >= self._next:
            self.refresh()

    def refresh(self, force: bool = False) -> None:
        if not self._lock.acquire(blocking=force):
            return  # another thread is refreshing; keep serving the current deployment
        try:
            self._next = time.monotonic() + self.interval_s
            for name, engine in self.engines.items():
                version = current_version(self.layout, name)
                if version is None or version == self._loaded.get(name):
                    continue
                try:
                    engine.deployment = load_deployment(self.layout, engine, version)
                    self._loaded[name] = version
                except Exception as e:  # a bad artifact must not stop serving
                    log.error("use case %s: cannot load published version %s: %s", name, version, e)
                    self._loaded[name] = version
        finally:
            self._lock.release()
