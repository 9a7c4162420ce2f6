"""``LooperClient``: the two calls product code makes."""

from __future__ import annotations

import logging
import math
import os
import random
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import numpy as np

from looper_pipelines.blueprints import Blueprint, BlueprintError, Catalog, scan_catalog
from looper_pipelines.client.decision import Decision
from looper_pipelines.client.engine import DecisionEngine
from looper_pipelines.client.errors import LooperInputError, UnknownUseCaseError
from looper_pipelines.errors import bad_text, shown
from looper_pipelines.home import HomeLayout
from looper_pipelines.logs import LogStore
from looper_pipelines.logs.records import (
    DECISIONS,
    OBSERVATIONS,
    ids,
    new_decision_id,
    now_us,
    use_case_of,
)
from looper_pipelines.serving.runtime import DeploymentWatcher, ServingStatus

log = logging.getLogger(__name__)

Durability = Literal["default", "strict", "disabled"]
_SEEN_OBSERVATIONS = 200_000


class LooperClient:
    """Decisions and observations for every use case whose blueprint is found.

    ``get_decision`` returns only after the decision record has reached the operating
    system (``strict``: after fsync). The champion model and policy are picked up from the
    published serving artifact and hot-swapped when a new one is promoted.
    """

    def __init__(
        self,
        home: str | os.PathLike[str] | None = None,
        *,
        blueprints: Mapping[str, Blueprint] | None = None,
        clock: Callable[[], int] | None = None,
        log_durability: Durability = "default",
        fsync_interval_s: float = 0.1,
        reload_interval_s: float = 1.0,
        seed: int | None = None,
    ) -> None:
        self.layout = HomeLayout.of(home)
        self.home: Path = self.layout.root
        # a broken blueprint file leaves its use case out (a warning is logged) and the
        # others served; asking for it raises an error naming the file and the problem
        self._catalog = Catalog(dict(blueprints)) if blueprints is not None else scan_catalog(self.home)
        self.blueprints = self._catalog.blueprints
        self.broken_blueprints: dict[str, BlueprintError] = self._catalog.broken
        for e in self.broken_blueprints.values():
            log.warning("use case not served, its blueprint is broken: %s", e)
        self._clock = clock or now_us
        self._log = LogStore(self.home, durability=log_durability, fsync_interval_s=fsync_interval_s)
        rng = random.Random(seed)
        self._engines = {name: DecisionEngine(bp, rng) for name, bp in self.blueprints.items()}
        self._watcher = DeploymentWatcher(self.layout, self._engines, interval_s=reload_interval_s)
        self._watcher.refresh(force=True)
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._seen_lock = threading.Lock()

    @classmethod
    def local(cls, home: str | os.PathLike[str] | None = None, **kwargs: Any) -> LooperClient:
        """The embedded default: logs, models and state under ``home`` (or $LOOPER_HOME)."""
        return cls(home, **kwargs)

    # -- the two calls --------------------------------------------------------------------
    def get_decision(self, use_case: str, subject_id: str, features: Mapping[str, Any]) -> Decision:
        r = self.decide_record(use_case, subject_id, features)
        return Decision(
            decision_id=r["decision_id"],
            use_case=use_case,
            subject_id=subject_id,
            action=r["action"],
            propensity=r["propensity"],
            scores=r["scores"],
            model_version=r["model_version"],
            blueprint_version=r["blueprint_version"],
            policy_version=r["policy_version"],
            explored=r["explored"],
            experiment_arm=r["experiment_arm"],
            timestamp_us=r["timestamp"],
        )

    def decide_record(self, use_case: str, subject_id: str, features: Mapping[str, Any]) -> dict[str, Any]:
        """``get_decision`` returning the decision record as logged (a dict with the
        decision log's columns; ``features`` and ``scores`` as dicts) instead of a
        ``Decision``: for servers that build their own response from it. The record is
        the caller's: nothing else keeps a reference to it."""
        engine = self._engine(use_case)
        if not isinstance(subject_id, str) or not subject_id:
            raise LooperInputError("subject_id", "must be a non-empty string")
        self._watcher.maybe_refresh()
        normalised, c = engine.choose(features)
        dep = c.deployment
        ts = self._clock()
        record = {
            "decision_id": new_decision_id(use_case, ts),
            "use_case": use_case,
            "subject_id": subject_id,
            "timestamp": ts,
            "features": normalised,
            "action": engine.actions[c.action_index],
            "action_index": c.action_index,
            "propensity": c.propensity,
            "scores": c.scores,
            "model_version": dep.model_version,
            "blueprint_version": engine.blueprint_version,
            "policy_version": dep.policy_version,
            "explored": c.explored,
            "experiment_arm": c.experiment_arm,
            "assignment_probability": c.assignment_probability,
        }
        try:
            self._log.append(DECISIONS, use_case, record)
        except ValueError:
            _explain_text(record, _DECISION_TEXT)  # a subject id that is not valid text
            raise
        return record

    def log_observation(
        self,
        decision_id: str,
        name: str,
        value: float | int | bool,
        observation_id: str | None = None,
        *,
        use_case: str | None = None,
    ) -> str:
        """Record an outcome of a decision; returns the observation id. Idempotent by
        ``observation_id``. The decision may have been made by another process.

        Returning means the record is stored (as ``get_decision``'s record is); an id
        counts as seen only then, so a call that raised (a full disk, say) can be retried
        with the same ``observation_id`` and stores the observation once. (Two concurrent
        calls with one new id may both store it; the readers keep the first.)"""
        if not isinstance(decision_id, str) or not decision_id:
            raise LooperInputError("decision_id", "must be a non-empty string")
        uc = use_case or use_case_of(decision_id)
        if uc is None:
            raise LooperInputError(
                "decision_id", f"{shown(decision_id)} is not a Looper decision id; pass use_case= for imported ids"
            )
        engine = self._engine(uc)
        bp = engine.blueprint
        if name not in bp.label_names:
            raise LooperInputError("name", f"{shown(name)} is not a label of {uc!r}; expected one of {bp.label_names}")
        x = _check_observation_value(value)
        if bp.label(name).kind == "binary" and x not in (0.0, 1.0):
            raise LooperInputError("value", f"label {name!r} is binary: expected 0 or 1, got {shown(value)}")
        if observation_id is None:
            observation_id = ids.new()
        elif not isinstance(observation_id, str) or not observation_id:
            raise LooperInputError("observation_id", "must be a non-empty string when given")
        seen = self._seen
        if observation_id in seen:  # a lookup needs no lock; a retry of a stored id
            return observation_id
        record = {
            "observation_id": observation_id,
            "decision_id": decision_id,
            "use_case": uc,
            "name": name,
            "value": x,
            "timestamp": self._clock(),
        }
        try:
            self._log.append(OBSERVATIONS, uc, record)
        except ValueError:
            _explain_text(record, _OBSERVATION_TEXT)  # ids that are not valid text
            raise
        # seen only once stored: a failed append leaves the id to be retried
        with self._seen_lock:
            seen[observation_id] = None
            if len(seen) > _SEEN_OBSERVATIONS:
                seen.popitem(last=False)
        return observation_id

    # -- beyond the two calls --------------------------------------------------------------
    def action_probabilities(self, use_case: str, rows: list[Mapping[str, Any]], *, greedy: bool = False) -> np.ndarray:
        """(n, K) probability of each action (blueprint order) under the deployed stochastic
        policy, exploration and experiment included (``greedy``: one-hot, the deployed
        policy's own choice without them); nothing is logged."""
        self._watcher.maybe_refresh()
        return self._engine(use_case).probabilities(rows, greedy=greedy)

    def refresh(self) -> None:
        """Pick up a newly published champion now rather than at the next check."""
        self._watcher.refresh(force=True)

    def deployment(self, use_case: str) -> Any:
        return self._engine(use_case).deployment

    def serving_status(self, use_case: str) -> ServingStatus:
        """Whether the published version serves, and if not (it did not verify) what does
        instead and why."""
        self._engine(use_case)
        return self._watcher.status[use_case]

    @property
    def clock(self) -> Callable[[], int]:
        """The clock that timestamps records (epoch microseconds)."""
        return self._clock

    @property
    def use_cases(self) -> list[str]:
        return sorted(self._engines)

    def close(self) -> None:
        self._log.close()

    def __enter__(self) -> LooperClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _engine(self, use_case: str) -> DecisionEngine:
        try:
            return self._engines[use_case]
        except (KeyError, TypeError):
            if isinstance(use_case, str):
                raise UnknownUseCaseError("use_case", self._catalog.why_missing(use_case)) from None
            raise UnknownUseCaseError(
                "use_case", f"no blueprint named {shown(use_case)}; known: {sorted(self._engines)}"
            ) from None


def _check_observation_value(value: Any) -> float:
    if isinstance(value, bool):
        return float(value)
    if not isinstance(value, int | float):
        raise LooperInputError("value", f"expected a number, got {type(value).__name__}")
    try:
        x = float(value)
    except OverflowError:
        raise LooperInputError("value", f"must be finite, got {shown(value)} (beyond the float range)") from None
    if not math.isfinite(x):
        raise LooperInputError("value", f"must be finite, got {shown(value)}")
    return x


_DECISION_TEXT = ("subject_id",)
_OBSERVATION_TEXT = ("observation_id", "decision_id", "name")


def _explain_text(record: Mapping[str, Any], fields: tuple[str, ...]) -> None:
    """Raise ``LooperInputError`` naming the first of ``fields`` in ``record`` that is a
    string the log cannot store (a lone surrogate); return if there is none (the append
    failed for another reason, which the caller re-raises). Off the hot path: called
    only after an append refused its record."""
    for field in fields:
        value = record.get(field)
        problem = bad_text(value) if isinstance(value, str) else None
        if problem is not None:
            raise LooperInputError(field, problem) from None
