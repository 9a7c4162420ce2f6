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
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from looper_pipelines.features import action_grid
from looper_pipelines.home import HomeLayout
from looper_pipelines.policies import Mixing, build_policy
from looper_pipelines.serving.manifest import ArtifactError, verify_artifact

try:  # every label's model on one row in one call (setup.py builds it with a C compiler)
    from looper_pipelines.serving import _rowcall
except ImportError:  # pragma: no cover - not built: score_row in Python
    _rowcall = None  # type: ignore[assignment]

log = logging.getLogger(__name__)

CURRENT = "current.json"
PUBLISHED_LOG = "published.jsonl"  # one line per activation, oldest first
REASON_CHARS = 300  # longest reason reported for a refused artifact
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
        x = action_grid(rows, self.n_actions)
        return {
            label: np.asarray(m.predict(x), dtype=np.float64).reshape(n, self.n_actions)
            for label, m in self.models.items()
        }


def current_version(layout: HomeLayout, use_case: str) -> str | None:
    """The published version (None when nothing is published or the record is unreadable)."""
    try:
        doc = read_current(layout, use_case)
    except ArtifactError:
        return None
    return None if doc is None else doc["version"]


def read_current(layout: HomeLayout, use_case: str) -> dict[str, Any] | None:
    """``current.json`` (None when nothing was ever published); raises ``ArtifactError``
    when it exists but cannot be read as a publication record."""
    path = layout.serving / use_case / CURRENT
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as e:
        raise ArtifactError(f"cannot read {path}: {e.strerror}") from None
    try:
        doc = json.loads(raw)
        ok = isinstance(doc, dict) and isinstance(doc.get("version"), str) and bool(doc["version"])
    except (UnicodeDecodeError, ValueError):
        ok = False
    if not ok:
        raise ArtifactError(f"{path} is not a valid publication record")
    return doc


def published_versions(layout: HomeLayout, use_case: str) -> list[str]:
    """Every version ever activated, the most recent activation first, each once."""
    try:
        lines = (layout.serving / use_case / PUBLISHED_LOG).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return []
    out: list[str] = []
    for line in reversed(lines):
        try:
            version = json.loads(line)["version"]
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line
        if isinstance(version, str) and version not in out:
            out.append(version)
    return out


def describe_failure(e: BaseException) -> str:
    """One bounded line saying why an artifact was refused."""
    text = f"{e.filename} is missing" if isinstance(e, FileNotFoundError) and e.filename else (str(e) or type(e).__name__)
    text = " ".join(text.split())
    return text if len(text) <= REASON_CHARS else text[: REASON_CHARS - 1] + "…"


def deployment_meta(layout: HomeLayout, use_case: str, version: str) -> dict[str, Any]:
    """A published version's ``deployment.json``; raises ``ArtifactError`` when the
    version, or its record, is missing or unreadable."""
    folder = layout.serving / use_case / "versions" / version
    if not folder.is_dir():
        raise ArtifactError(f"version folder {folder} does not exist")
    path = folder / DEPLOYMENT
    try:
        meta = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise ArtifactError(f"{path} is missing") from None
    except (UnicodeDecodeError, ValueError):
        raise ArtifactError(f"{path} is not valid JSON") from None
    if not isinstance(meta, dict) or not isinstance(meta.get("models"), dict) or not meta["models"]:
        raise ArtifactError(f"{path} names no models")
    missing = [k for k in ("model_version", "policy_version") if k not in meta]
    if missing:
        raise ArtifactError(f"{path} lacks {missing}")
    return meta


class LineageError(ArtifactError):
    """A published version was trained for another blueprint lineage than the current one."""


def _check_lineage(meta: Mapping[str, Any], bp: Any, version: str) -> None:
    if meta.get("lineage_version") != bp.lineage_version:
        raise LineageError(
            f"published version {version} was trained for blueprint lineage {meta.get('lineage_version')}, "
            f"but the blueprint now has lineage {bp.lineage_version}"
        )


def verify_version(layout: HomeLayout, bp: Any, version: str) -> dict[str, Any]:
    """Check a published version of ``bp`` without loading it: its ``deployment.json``,
    its blueprint lineage, and the SHA-256 of every file of every label's model. Returns
    the deployment record; raises ``ArtifactError`` (``IntegrityError``) otherwise."""
    meta = deployment_meta(layout, bp.name, version)
    _check_lineage(meta, bp, version)
    folder = layout.serving / bp.name / "versions" / version
    for rel in meta["models"].values():
        verify_artifact(folder / rel)
    return meta


def load_deployment(layout: HomeLayout, engine: Any, version: str) -> Any:
    """Build a ``Deployment`` from a published version (raises on a bad artifact: every
    file is checked against its recorded SHA-256 before it is loaded)."""
    from looper_pipelines.client.engine import Deployment
    from looper_pipelines.serving.compiled import CompiledModel

    bp = engine.blueprint
    folder = layout.serving / bp.name / "versions" / version
    meta = deployment_meta(layout, bp.name, version)
    _check_lineage(meta, bp, version)
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


T = TypeVar("T")


def newest_verified(
    layout: HomeLayout, use_case: str, load: Callable[[str], T], exclude: str | None = None
) -> tuple[str, T] | None:
    """The most recently published version (other than ``exclude``) that ``load``
    accepts, with what it returned; None when none does."""
    for version in published_versions(layout, use_case):
        if version == exclude:
            continue
        try:
            return version, load(version)
        except Exception as e:  # any failure means: not this version
            log.debug("use case %s: published version %s does not verify: %s", use_case, version, describe_failure(e))
    return None


@dataclass(frozen=True)
class ServingStatus:
    """What serves a use case against what is published.

    ``state``: ``ok`` (the published version, or nothing published: the default action);
    ``kept`` (the published version was refused; the model loaded before keeps serving);
    ``fallback`` (refused; the newest earlier published version that verifies serves);
    ``default`` (refused, and no published version verifies: the default action serves).
    """

    state: str = "ok"
    published_version: str | None = None
    serving_version: str | None = None  # the published version whose model serves; None: the default action
    rejected_version: str | None = None
    reason: str | None = None

    @property
    def degraded(self) -> bool:
        return self.state != "ok"

    @property
    def no_verified_version(self) -> bool:
        return self.state == "default"

    def to_dict(self) -> dict[str, Any]:
        return {"status": "degraded" if self.degraded else "ok", "state": self.state,
                "published_version": self.published_version, "serving_version": self.serving_version,
                "rejected_version": self.rejected_version, "reason": self.reason}


def refused(published: str | None, reason: str, kept: str | None, fallback: str | None) -> ServingStatus:
    """The status after the published version (None: an unreadable ``current.json``) was
    refused for ``reason``, saying what serves instead."""
    what = f"published version {published}" if published else "the publication record"
    if kept is not None:
        state, serving, tail = "kept", kept, f"keeping version {kept}, loaded before"
    elif fallback is not None:
        state, serving, tail = "fallback", fallback, f"serving {fallback}, the newest published version that verifies"
    else:
        state, serving, tail = "default", None, "no published version verifies: serving the default action"
    return ServingStatus(state, published, serving, published, f"{what} does not verify ({reason}); {tail}")


class DeploymentWatcher:
    """Checks for a newly published champion at most every ``interval_s`` seconds and swaps
    it into the engine as one reference: decisions in flight finish on the old one.

    A published version that does not verify is refused, never half-loaded: a process that
    already serves a model keeps it; one that serves none (a fresh process) falls back to
    the newest published version that verifies, else the default action. ``status`` says
    which, and why."""

    def __init__(self, layout: HomeLayout, engines: Mapping[str, Any], interval_s: float = 1.0) -> None:
        self.layout = layout
        self.engines = engines
        self.interval_s = interval_s
        self.status: dict[str, ServingStatus] = {name: ServingStatus() for name in engines}
        self._seen: dict[str, object] = {}
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
                self._refresh_one(name, engine)
        finally:
            self._lock.release()

    def _refresh_one(self, name: str, engine: Any) -> None:
        try:
            doc = read_current(self.layout, name)
            seen: object = None if doc is None else (doc["version"], doc.get("activated_at"))
        except ArtifactError as e:
            doc, seen = None, ("unreadable", str(e))
            problem: str | None = describe_failure(e)
        else:
            problem = None
        if name in self._seen and self._seen[name] == seen:
            return
        self._seen[name] = seen
        if doc is None and problem is None:
            return  # nothing published: whatever serves keeps serving
        version = doc["version"] if doc is not None else None
        if version is not None:
            try:
                engine.deployment = load_deployment(self.layout, engine, version)
                self.status[name] = ServingStatus("ok", version, version)
                return
            except Exception as e:  # a bad artifact must not stop serving
                problem = describe_failure(e)
        assert problem is not None
        self.status[name] = self._refuse(name, engine, version, problem)

    def _refuse(self, name: str, engine: Any, version: str | None, reason: str) -> ServingStatus:
        kept = self.status[name].serving_version
        fallback = None
        if kept is None:
            found = newest_verified(self.layout, name, lambda v: load_deployment(self.layout, engine, v), exclude=version)
            if found is not None:
                fallback, engine.deployment = found
        status = refused(version, reason, kept, fallback)
        log.error("use case %s: %s", name, status.reason)
        return status
