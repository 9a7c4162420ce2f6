"""Simulated recommendation slot (blueprint ``item_recommendation``): which of eight items
to show.

Subjects have a segment, true interests in sport, tech and fashion, an age and a join
date. The features are the segment, the interests as measured from history (the
``affinity_*`` features; absent for new users, whose default is 0), the age (sometimes
unknown) and whether the user is new.

Ground truth: the click probability of item j for a user is
``sigmoid(b_j + interest · c_j + segment_j + age_j + new_j)`` with an item popularity
``b_j``, a category vector ``c_j`` matched against the affinities, a bonus when the item
belongs to the user's segment, an age slope (some items appeal to younger, some to older
users) and a bonus of the onboarding item for new users. The best item therefore differs
by user; the single best item for everyone is the generally popular ``item_0``.

Drift: interest in sport rises and interest in fashion falls a little each day, and new
users join.
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.simulation.base import (
    HOUR_US,
    Columns,
    DeliveryConfig,
    Population,
    Simulator,
    sigmoid,
)

SEGMENTS = np.array(["casual", "sport", "tech", "fashion"])
SEGMENT_P = np.array([0.4, 0.2, 0.2, 0.2])
INTERESTS = ("sport", "tech", "fashion")

# per item: popularity, category vector (sport, tech, fashion), segment it belongs to,
# age slope per decade above 35, bonus for new users
ITEMS: list[tuple[float, tuple[float, float, float], str | None, float, float]] = [
    (-2.3, (0.2, 0.2, 0.2), None, 0.0, 0.0),  # item_0: generally popular
    (-3.3, (1.8, 0.0, 0.0), "sport", -0.35, 0.0),  # item_1: sport, younger users
    (-3.1, (1.4, 0.0, 0.3), "sport", 0.1, 0.0),  # item_2: sport, broad
    (-3.2, (0.0, 1.8, 0.0), "tech", -0.1, 0.0),  # item_3: tech
    (-3.4, (0.0, 1.55, 0.0), "tech", 0.35, 0.0),  # item_4: tech, older users
    (-3.2, (0.0, 0.0, 1.8), "fashion", 0.0, 0.0),  # item_5: fashion
    (-3.4, (0.3, 0.0, 1.7), "fashion", -0.45, 0.0),  # item_6: fashion, younger users
    (-3.4, (0.2, 0.2, 0.2), None, 0.0, 1.5),  # item_7: onboarding, for new users
]
SEGMENT_BONUS = 0.3
# mean true interest per segment (sport, tech, fashion)
SEGMENT_INTEREST = {
    "casual": (0.25, 0.25, 0.25),
    "sport": (0.7, 0.2, 0.15),
    "tech": (0.15, 0.7, 0.15),
    "fashion": (0.15, 0.15, 0.7),
}


class RecommendationSimulator(Simulator):
    use_case: ClassVar[str] = "item_recommendation"
    new_subjects_per_day: ClassVar[float] = 0.02
    new_user_days: ClassVar[float] = 7.0
    # daily drift of the mean interests (sport, tech, fashion)
    interest_trend: ClassVar[tuple[float, float, float]] = (0.02, 0.0, -0.01)

    def __init__(
        self,
        seed: int = 0,
        blueprint: Blueprint | None = None,
        delivery: DeliveryConfig | None = None,
    ) -> None:
        super().__init__(seed, blueprint, delivery)
        if len(self.actions) != len(ITEMS):
            raise ValueError(
                f"the simulator has {len(ITEMS)} items; the blueprint has {len(self.actions)} actions"
            )
        self._pop = np.array([it[0] for it in ITEMS])
        self._cat = np.array([it[1] for it in ITEMS])  # (K, 3)
        self._seg = np.array([it[2] or "" for it in ITEMS])
        self._age = np.array([it[3] for it in ITEMS])
        self._new = np.array([it[4] for it in ITEMS])

    @classmethod
    def expected_features(cls) -> dict[str, str]:
        return {
            "age": "float",
            "segment": "category",
            "affinity_sport": "float",
            "affinity_tech": "float",
            "affinity_fashion": "float",
            "is_new_user": "bool",
        }

    # -- population ------------------------------------------------------------------------
    def _new_subjects(self, n: int, rng: np.random.Generator, day: int) -> Columns:
        segment = rng.choice(SEGMENTS, size=n, p=SEGMENT_P)
        means = np.array([SEGMENT_INTEREST[s] for s in segment.tolist()]).reshape(n, 3)
        interest = np.clip(means + rng.normal(0.0, 0.15, (n, 3)), 0.0, 1.0)
        if day == 0:
            tenure = np.where(
                rng.random(n) < 0.08, rng.uniform(0.0, 7.0, n), rng.lognormal(np.log(200.0), 1.0, n)
            )
        else:
            tenure = rng.uniform(0.0, 1.0, n)
        return {
            "segment": segment,
            "interest_sport": interest[:, 0],
            "interest_tech": interest[:, 1],
            "interest_fashion": interest[:, 2],
            "age": np.clip(rng.normal(35.0, 12.0, n), 13.0, 90.0),
            "tenure": tenure,
            "visit_prob": rng.beta(2.5, 2.8, n),
            "peak_hour": np.where(
                rng.random(n) < 0.5, rng.normal(12.5, 2.0, n), rng.normal(20.5, 2.0, n)
            ),
        }

    def _drift(self, pop: Population, day: int, rng: np.random.Generator) -> None:
        a = pop.attrs
        a["tenure"] = a["tenure"] + 1.0
        for name, step in zip(INTERESTS, self.interest_trend, strict=True):
            key = f"interest_{name}"
            a[key] = np.clip(a[key] + step + rng.normal(0.0, 0.02, pop.n), 0.0, 1.0)

    def _visits(
        self, pop: Population, idx: np.ndarray, day: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, Columns, dict[str, np.ndarray]]:
        a = {k: v[idx] for k, v in pop.attrs.items()}
        n = idx.shape[0]
        hour_f = np.mod(a["peak_hour"] + rng.normal(0.0, 2.0, n), 24.0)
        offsets = (hour_f * HOUR_US).astype(np.int64)
        is_new = a["tenure"] + hour_f / 24.0 < self.new_user_days
        cols: Columns = {"age": np.round(a["age"], 1), "segment": a["segment"].astype(str)}
        for name in INTERESTS:
            measured = np.clip(a[f"interest_{name}"] + rng.normal(0.0, 0.08, n), 0.0, 1.0)
            cols[f"affinity_{name}"] = np.round(measured, 3)
        cols["is_new_user"] = is_new
        present = {
            "age": rng.random(n) >= 0.12,
            # the default segment is casual; casual users sometimes have none recorded
            "segment": ~((cols["segment"] == "casual") & (rng.random(n) < 0.3)),
            "is_new_user": is_new | (rng.random(n) >= 0.15),
        }
        for name in INTERESTS:  # no history yet: no measured affinities (default 0)
            present[f"affinity_{name}"] = ~is_new
        return offsets, cols, present

    # -- truth -----------------------------------------------------------------------------
    def _truth(self, columns: Columns) -> dict[str, np.ndarray]:
        aff = np.column_stack(
            [np.asarray(columns[f"affinity_{c}"], dtype=np.float64) for c in INTERESTS]
        )
        segment = np.asarray(columns["segment"]).astype(str)
        age = np.asarray(columns["age"], dtype=np.float64)
        age_term = np.where(np.isnan(age), 0.0, (age - 35.0) / 10.0)
        is_new = np.asarray(columns["is_new_user"], dtype=np.float64)
        logit = (
            self._pop[None, :]
            + aff @ self._cat.T
            + SEGMENT_BONUS * (segment[:, None] == self._seg[None, :])
            + age_term[:, None] * self._age[None, :]
            + is_new[:, None] * self._new[None, :]
        )
        return {"click": sigmoid(logit)}
