"""Simulated push notifications (blueprint ``notification_send``).

Subjects have a latent app-usage rate, a propensity to open notifications, a load of
notifications from other campaigns, a platform and a preferred hour. A decision happens
when a notification could be sent (once per visit day, at an hour near the subject's
preferred hour). The features are what the product would know then: tenure, sessions in
the last 7 days, days since the last visit, the historical open rate (missing when the
subject has never received a notification), notifications in the last 7 days, platform
and hour.

Ground truth, from the features the decision sees (so a model can in principle learn it):

- ``click`` within 24 h: without a notification users come back on their own with
  probability ``p0(x)`` (higher for active users); sending adds ``tau(x)``, large for
  lapsed-but-engaged users (a few days away, high open rate) in the evening, about zero
  for very active users and under heavy notification load, negative for users who never
  open notifications.
- ``unsubscribe`` within 72 h only when sent, with probability ``u(x)`` rising with the
  notification load, a low open rate and night-time sends.

Drift: engagement slowly falls, other campaigns' load rises, open propensities decay a
little each day, and new users join.
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

PLATFORMS = np.array(["ios", "android", "web"])
PLATFORM_P = np.array([0.45, 0.40, 0.15])
OPEN_RATE_PRIOR = 0.2  # used by the truth when a subject has no open-rate history


class NotificationSimulator(Simulator):
    use_case: ClassVar[str] = "notification_send"
    new_subjects_per_day: ClassVar[float] = 0.015

    # daily trends (multiplicative per day)
    engagement_trend: ClassVar[float] = 0.98
    load_trend: ClassVar[float] = 1.03
    open_trend: ClassVar[float] = 0.99

    def __init__(
        self,
        seed: int = 0,
        blueprint: Blueprint | None = None,
        delivery: DeliveryConfig | None = None,
    ) -> None:
        super().__init__(seed, blueprint, delivery)
        decision = self.blueprint.decision
        self._treat = self.actions.index(decision.treatment)
        self._control = self.actions.index(decision.control)

    @classmethod
    def expected_features(cls) -> dict[str, str]:
        return {
            "tenure_days": "float",
            "sessions_last_7d": "int",
            "days_since_last_visit": "float",
            "notif_open_rate": "float",
            "notifs_last_7d": "int",
            "platform": "category",
            "hour_of_day": "int",
        }

    # -- population ------------------------------------------------------------------------
    def _new_subjects(self, n: int, rng: np.random.Generator, day: int) -> Columns:
        if day == 0:
            new = rng.random(n) < 0.08
            tenure = np.where(
                new,
                rng.uniform(0.0, 30.0, n),
                np.minimum(rng.lognormal(np.log(240.0), 1.0, n), 3650.0),
            )
        else:
            tenure = rng.uniform(0.0, 1.0, n)
        lapsed = rng.random(n) < 0.3
        rate = np.where(
            lapsed, rng.lognormal(np.log(0.06), 0.7, n), rng.lognormal(np.log(0.7), 0.8, n)
        )
        open_true = rng.beta(1.6, 4.5, n)
        load = rng.lognormal(np.log(3.0), 0.8, n)
        platform = rng.choice(PLATFORMS, size=n, p=PLATFORM_P)
        visit_prob = rng.beta(2.5, 2.8, n)
        peak = np.where(rng.random(n) < 0.4, rng.normal(8.5, 1.5, n), rng.normal(19.5, 2.0, n))
        return {
            "tenure": tenure,
            "rate": rate,
            "open_true": open_true,
            "load": load,
            "platform": platform,
            "visit_prob": visit_prob,
            "peak_hour": peak,
        }

    def _drift(self, pop: Population, day: int, rng: np.random.Generator) -> None:
        a = pop.attrs
        a["tenure"] = a["tenure"] + 1.0
        a["rate"] = a["rate"] * np.exp(rng.normal(0.0, 0.1, pop.n))
        a["open_true"] = np.clip(a["open_true"] + rng.normal(0.0, 0.01, pop.n), 0.0, 1.0)

    def _visits(
        self, pop: Population, idx: np.ndarray, day: int, rng: np.random.Generator
    ) -> tuple[np.ndarray, Columns, dict[str, np.ndarray]]:
        a = {k: v[idx] for k, v in pop.attrs.items()}
        n = idx.shape[0]
        hour_f = np.mod(a["peak_hour"] + rng.normal(0.0, 2.0, n), 24.0)
        hour = np.floor(hour_f).astype(np.int64) % 24
        offsets = (hour_f * HOUR_US).astype(np.int64)
        tenure = a["tenure"] + hour_f / 24.0
        rate = a["rate"] * self.engagement_trend**day
        sessions = rng.poisson(7.0 * rate)
        # most recent of `sessions` uniform session times in the last 7 days, else older
        recent = 7.0 * rng.beta(1.0, np.maximum(sessions, 1))
        older = 7.0 + rng.exponential(1.0 / np.maximum(rate, 0.005))
        since = np.where(sessions > 0, recent, older)
        since = np.round(np.minimum(np.minimum(since, tenure), 365.0), 2)
        open_p = np.clip(a["open_true"] * self.open_trend**day, 0.0, 1.0)
        history = rng.poisson(a["load"] * np.minimum(tenure, 60.0) / 7.0)
        opened = rng.binomial(history, open_p)
        open_rate = np.round(opened / np.maximum(history, 1), 3)
        notifs = rng.poisson(a["load"] * self.load_trend**day)
        cols: Columns = {
            "tenure_days": np.round(tenure, 2),
            "sessions_last_7d": sessions.astype(np.int64),
            "days_since_last_visit": since,
            "notif_open_rate": open_rate,
            "notifs_last_7d": notifs.astype(np.int64),
            "platform": a["platform"].astype(str),
            "hour_of_day": hour,
        }
        gap = rng.random(n) < 0.02  # a logging gap in the activity counters
        present = {
            "sessions_last_7d": ~gap,
            "days_since_last_visit": ~gap,
            "notif_open_rate": history > 0,
            "notifs_last_7d": rng.random(n) >= 0.02,
            # web clients do not always report their platform (the default is web)
            "platform": ~((cols["platform"] == "web") & (rng.random(n) < 0.4)),
        }
        return offsets, cols, present

    # -- truth -----------------------------------------------------------------------------
    def _truth(self, columns: Columns) -> dict[str, np.ndarray]:
        s = np.asarray(columns["sessions_last_7d"], dtype=np.float64)
        since = np.asarray(columns["days_since_last_visit"], dtype=np.float64)
        o = np.asarray(columns["notif_open_rate"], dtype=np.float64)
        o = np.where(np.isnan(o), OPEN_RATE_PRIOR, o)
        load = np.asarray(columns["notifs_last_7d"], dtype=np.float64)
        hour = np.asarray(columns["hour_of_day"], dtype=np.float64)
        platform = np.asarray(columns["platform"]).astype(str)
        tenure = np.asarray(columns["tenure_days"], dtype=np.float64)

        # coming back on their own
        p0 = sigmoid(-2.9 + 0.75 * np.log1p(s) - 0.35 * np.log1p(since) + 1.0 * (o - 0.25))
        # effect of sending: lapsed-but-engaged users, evenings, light notification load
        recency = np.exp(-0.5 * ((np.log1p(since) - np.log1p(6.0)) / 0.9) ** 2)
        dist = np.minimum(np.abs(hour - 19.0), 24.0 - np.abs(hour - 19.0))
        hour_mult = 0.35 + 0.65 * np.exp(-0.5 * (dist / 3.0) ** 2)
        fatigue = np.exp(-load / 10.0)
        plat_mult = np.select([platform == "android", platform == "web"], [1.1, 0.6], 1.0)
        newbie = np.where(tenure < 14.0, 1.3, 1.0)
        tau = 1.3 * (o - 0.06) * recency * hour_mult * fatigue * plat_mult * newbie
        tau = tau - 0.03 * s / (s + 8.0)  # very active users find it a nuisance
        p1 = np.clip(p0 + tau, 0.001, 0.995)
        # unsubscribing, only when sent
        night = (hour < 7) | (hour >= 23)
        u = sigmoid(-5.5 + 0.13 * load + 4.0 * (0.2 - o) + 0.3 * (platform == "ios") + 0.5 * night)
        return {
            "click": self._by_action(p0, p1),
            "unsubscribe": self._by_action(np.zeros_like(u), u),
        }

    def _by_action(self, control: np.ndarray, treated: np.ndarray) -> np.ndarray:
        """(n, 2) in the blueprint's action order."""
        out = np.empty((control.shape[0], 2))
        out[:, self._control] = control
        out[:, self._treat] = treated
        return out
