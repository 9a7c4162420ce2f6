"""Simulated products with known ground truth.

A simulator generates a population whose features match a use case's blueprint, drives
daily traffic through the real decision SDK (decisions, then delayed, sometimes dropped or
duplicated observations) and knows the true expected outcome of every action, so that
learned policies, off-policy estimates and promotions can be measured against the truth::

    report = run_simulation(home, "notification_send", subjects=5000, days=3, seed=0)
    sim = get_simulator("notification_send", seed=0)
    sim.policy_value(lambda rows: client.action_probabilities("notification_send", rows))
"""

from __future__ import annotations

import os
from datetime import date, datetime
from typing import Any

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.simulation.base import (
    DEFAULT_START,
    DeliveryConfig,
    EventQueue,
    FeatureCodec,
    PolicyEvaluation,
    Population,
    SimClock,
    SimulationReport,
    Simulator,
    Visits,
    resolve_start,
    validate_row,
)
from looper_pipelines.simulation.notification import NotificationSimulator
from looper_pipelines.simulation.recommendation import RecommendationSimulator

SIMULATORS: dict[str, type[Simulator]] = {
    NotificationSimulator.use_case: NotificationSimulator,
    RecommendationSimulator.use_case: RecommendationSimulator,
}


def get_simulator(
    use_case: str,
    seed: int = 0,
    blueprint: Blueprint | None = None,
    delivery: DeliveryConfig | None = None,
) -> Simulator:
    """The simulator of ``use_case`` (its packaged blueprint unless ``blueprint`` is given)."""
    try:
        cls = SIMULATORS[use_case]
    except KeyError:
        raise ValueError(
            f"no simulator for use case {use_case!r}; available: {sorted(SIMULATORS)}"
        ) from None
    return cls(seed=seed, blueprint=blueprint, delivery=delivery)


def run_simulation(
    home: str | os.PathLike[str] | None,
    use_case: str,
    subjects: int,
    days: int,
    seed: int,
    start: datetime | date | str | int | None = None,
    client: Any | None = None,
    *,
    clock: SimClock | None = None,
    delivery: DeliveryConfig | None = None,
) -> SimulationReport:
    """Simulate ``days`` days of ``use_case`` traffic from ``subjects`` subjects through the
    decision SDK, logging into ``home``.

    Without ``client`` a ``LooperClient.local(home, clock=...)`` on a simulated clock is
    opened and closed here. A given ``client`` must timestamp with ``clock`` (a
    :class:`SimClock`), passed here or exposed as ``client.clock``; it is left open.
    """
    owned = client is None
    if client is None:
        from looper_pipelines.client import LooperClient

        clock = SimClock(resolve_start(start))
        client = LooperClient.local(home, clock=clock, seed=seed)
    else:
        clock = clock if clock is not None else getattr(client, "clock", None)
        if not isinstance(clock, SimClock):
            raise ValueError(
                "a client passed to run_simulation must use a SimClock; pass it as clock="
            )
    try:
        blueprints = getattr(client, "blueprints", None)
        blueprint = blueprints.get(use_case) if isinstance(blueprints, dict) else None
        sim = get_simulator(use_case, seed=seed, blueprint=blueprint, delivery=delivery)
        return sim.run(client, clock, subjects=subjects, days=days, start=start)
    finally:
        if owned:
            client.close()


__all__ = [
    "DEFAULT_START",
    "SIMULATORS",
    "DeliveryConfig",
    "EventQueue",
    "FeatureCodec",
    "NotificationSimulator",
    "PolicyEvaluation",
    "Population",
    "RecommendationSimulator",
    "SimClock",
    "SimulationReport",
    "Simulator",
    "Visits",
    "get_simulator",
    "resolve_start",
    "run_simulation",
    "validate_row",
]
