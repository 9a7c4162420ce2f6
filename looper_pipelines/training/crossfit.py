"""Out-of-fold predictions: every example scored, for every action, by label models that
never saw it (cross-fitting). Policy tuning and the promotion gate judge policies on these,
so a reward model's fit to an example never flatters the policy evaluated on it.

Folds group examples by subject (a subject's decisions share one fold) through a stable
hash, so the same logs always split the same way whatever process or file wrote them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import polars as pl

from looper_pipelines.blueprints.model import Blueprint

FOLD_COLUMN = "fold"
ID_COLUMN = "decision_id"


def _bucket(key: str, seed: int, n_folds: int) -> int:
    digest = hashlib.blake2b(f"{seed}\0{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") % n_folds


def assign_folds(groups: Sequence[str], n_folds: int, seed: int = 0) -> np.ndarray:
    """Fold index per example, all examples of a group (subject) in one fold. With fewer
    than two groups per fold the examples are split one by one instead."""
    keys = [str(g) for g in groups]
    distinct = sorted(set(keys))
    if len(distinct) < 2 * n_folds:
        keys = [f"{i}" for i in range(len(keys))]
        distinct = keys
    fold_of = {k: _bucket(k, seed, n_folds) for k in distinct}
    folds = np.fromiter((fold_of[k] for k in keys), dtype=np.int64, count=len(keys))
    if len(keys) >= n_folds and len(np.unique(folds)) < n_folds:  # tiny data: deal round-robin
        order = {k: i for i, k in enumerate(sorted(distinct, key=lambda k: _bucket(k, seed, 1 << 30)))}
        folds = np.fromiter((order[k] % n_folds for k in keys), dtype=np.int64, count=len(keys))
    return folds


@dataclass(frozen=True)
class CrossFitted:
    """Out-of-fold predictions: ``scores[label]`` is (n, K), row i predicted by the models
    trained without ``folds == folds[i]``."""

    decision_ids: np.ndarray  # (n,) str
    folds: np.ndarray  # (n,) int
    scores: dict[str, np.ndarray]
    n_folds: int
    seed: int

    def to_frame(self) -> pl.DataFrame:
        cols: dict[str, object] = {ID_COLUMN: self.decision_ids, FOLD_COLUMN: self.folds}
        for label, s in self.scores.items():
            for k in range(s.shape[1]):
                cols[f"{label}:{k}"] = s[:, k]
        return pl.DataFrame(cols)

    @classmethod
    def from_frame(cls, frame: pl.DataFrame, labels: Sequence[str], n_actions: int, n_folds: int,
                   seed: int) -> CrossFitted:
        scores = {lb: np.column_stack([frame[f"{lb}:{k}"].to_numpy() for k in range(n_actions)]) for lb in labels}
        return cls(frame[ID_COLUMN].to_numpy(), frame[FOLD_COLUMN].to_numpy(), scores, n_folds, seed)

    def overlay(self, decision_ids: Sequence[str], scores: Mapping[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
        """``scores`` (n, K per label, rows in the order of ``decision_ids``) with the rows
        this cross-fit knows replaced by their out-of-fold predictions; and how many were."""
        pos = {d: i for i, d in enumerate(self.decision_ids.tolist())}
        mine = np.fromiter((pos.get(d, -1) for d in decision_ids), dtype=np.int64, count=len(decision_ids))
        known = mine >= 0
        out = {}
        for label, s in scores.items():
            s = np.array(s, dtype=np.float64, copy=True)
            if label in self.scores:
                s[known] = self.scores[label][mine[known]]
            out[label] = s
        return out, int(known.sum())

    def aligned(self, decision_ids: Sequence[str]) -> CrossFitted:
        """The same predictions in the order of ``decision_ids`` (every id must be known)."""
        pos = {d: i for i, d in enumerate(self.decision_ids.tolist())}
        try:
            idx = np.fromiter((pos[d] for d in decision_ids), dtype=np.int64, count=len(decision_ids))
        except KeyError as e:
            raise ValueError(
                f"example {e.args[0]} has no out-of-fold prediction: the examples changed since the "
                "model was trained; train again"
            ) from None
        return CrossFitted(self.decision_ids[idx], self.folds[idx], {k: v[idx] for k, v in self.scores.items()},
                           self.n_folds, self.seed)


CROSSFIT_ARTIFACT = "crossfit/scores.parquet"


def log_crossfit(registry: Any, run_id: str, cf: CrossFitted) -> None:
    """Store the out-of-fold predictions with the training run (one Parquet artifact)."""
    registry.log_table(run_id, CROSSFIT_ARTIFACT, cf.to_frame())


def load_crossfit(registry: Any, version: Any, bp: Blueprint, decision_ids: Sequence[str] | None = None,
                  required: bool = True) -> CrossFitted | None:
    """The registered version's out-of-fold predictions, in the order of ``decision_ids``
    (as stored when None). Without any: an error, or None when not ``required``."""
    frame = registry.load_table(version, CROSSFIT_ARTIFACT)
    if frame is None:
        if not required:
            return None
        raise ValueError(
            f"model version {version.version} of {bp.name} has no out-of-fold predictions ({CROSSFIT_ARTIFACT}); "
            "it was trained by an older Looper: train again"
        )
    labels = sorted({c.split(":")[0] for c in frame.columns if ":" in c})
    n_folds = int(frame[FOLD_COLUMN].max()) + 1 if frame.height else 0
    cf = CrossFitted.from_frame(frame, labels, len(bp.decision.actions), n_folds, int(version.tags.get("crossfit_seed", 0)))
    return cf if decision_ids is None else cf.aligned(decision_ids)
