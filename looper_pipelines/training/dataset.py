"""Read training examples from the mart (read-only) and encode them as model inputs.

Model input = the blueprint's features in order, then the action index (categorical), so
one model per label scores every action of a row.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import duckdb
import numpy as np
import polars as pl

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.features import encode_logged, with_action


def load_training_examples(
    warehouse: str | Path, use_case: str, table: str = "fct_training_examples", days: int | None = None
) -> pl.DataFrame:
    """Rows of ``<use_case>.<table>`` (optionally the newest ``days`` days), opened read-only."""
    if not Path(warehouse).exists():
        raise FileNotFoundError(f"warehouse {warehouse} does not exist: run the dbt assets first")
    con = duckdb.connect(str(warehouse), read_only=True)
    try:
        where = ""
        if days is not None:
            where = (
                f" where decision_date > (select max(decision_date) from {use_case}.{table}) - {int(days)}"
            )
        return con.sql(f"select * from {use_case}.{table}{where} order by decided_at, decision_id").pl()
    finally:
        con.close()


def feature_matrix(bp: Blueprint, features_json: pl.Series) -> np.ndarray:
    """Decode the logged feature JSON into the model's (n, F) float matrix, by the rules the
    SDK serves with (``looper_pipelines.features``)."""
    return encode_logged(bp, features_json)


@dataclass
class TrainingSet:
    x: np.ndarray  # (n, F) features only
    action: np.ndarray  # (n,) action index
    labels: dict[str, np.ndarray]
    propensity: np.ndarray
    day: np.ndarray  # decision date as days since epoch
    frame: pl.DataFrame

    @property
    def x_with_action(self) -> np.ndarray:
        return with_action(self.x, self.action)

    def subset(self, mask: np.ndarray) -> TrainingSet:
        return TrainingSet(
            self.x[mask],
            self.action[mask],
            {k: v[mask] for k, v in self.labels.items()},
            self.propensity[mask],
            self.day[mask],
            self.frame.filter(pl.Series(mask)),
        )

    def __len__(self) -> int:
        return int(self.x.shape[0])


def encode_examples(bp: Blueprint, frame: pl.DataFrame) -> TrainingSet:
    missing = [c for c in ("features", "action_index", "propensity", "decision_date") if c not in frame.columns]
    missing += [lb for lb in bp.label_names if lb not in frame.columns]
    if missing:
        raise ValueError(f"training examples lack columns {missing}")
    return TrainingSet(
        x=feature_matrix(bp, frame["features"]),
        action=frame["action_index"].cast(pl.Int64).to_numpy(),
        labels={lb: frame[lb].cast(pl.Float64).fill_null(0.0).to_numpy() for lb in bp.label_names},
        propensity=frame["propensity"].cast(pl.Float64).to_numpy(),
        day=frame["decision_date"].cast(pl.Date).cast(pl.Int32).to_numpy(),
        frame=frame,
    )


def decided_at_us(data: TrainingSet) -> np.ndarray:
    """Decision times in epoch microseconds (the day's midnight when the frame has none)."""
    frame = data.frame
    if "decided_at" in frame.columns and frame.height == len(data):
        t = frame["decided_at"]
        return (t.dt.epoch("us") if t.dtype.is_temporal() else t.cast(pl.Int64)).to_numpy()
    return data.day.astype(np.int64) * 86_400_000_000


def trained_through_us(data: TrainingSet) -> int:
    """The newest decision a model trained on ``data`` has seen (epoch microseconds)."""
    return int(decided_at_us(data).max())
