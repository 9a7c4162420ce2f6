"""What ``get_decision`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Decision:
    decision_id: str
    use_case: str
    subject_id: str
    action: str
    propensity: float
    scores: dict[str, list[float]] = field(default_factory=dict)
    model_version: str | None = None
    blueprint_version: str = ""
    policy_version: str = ""
    explored: bool = False
    experiment_arm: str | None = None
    timestamp_us: int = 0
