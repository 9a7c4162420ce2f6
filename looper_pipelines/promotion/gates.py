"""Whether a challenger may replace the champion, with the reason for every gate."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from looper_pipelines.blueprints.model import Blueprint


@dataclass(frozen=True)
class GateResult:
    name: str
    passed: bool
    detail: str


@dataclass
class PromotionDecision:
    promote: bool
    gates: list[GateResult] = field(default_factory=list)

    @property
    def reasons(self) -> list[str]:
        return [f"{'PASS' if g.passed else 'FAIL'} {g.name}: {g.detail}" for g in self.gates]

    def to_dict(self) -> dict[str, Any]:
        return {"promote": self.promote, "gates": [asdict(g) for g in self.gates]}


def decide_promotion(
    bp: Blueprint,
    *,
    checks_passed: bool,
    failed_checks: list[str],
    n_examples: int,
    challenger_metric: float,
    champion_metric: float | None,
    metric_name: str,
    lift_lower_bound: float | None,
    lift_value: float | None,
    guardrails: dict[str, float],
) -> PromotionDecision:
    """All gates as the blueprint sets them. ``*_metric`` is a loss (lower is better)
    measured on the same holdout; the lift is the off-policy lift of the challenger's
    policy over the champion's with its lower confidence bound."""
    p = bp.promotion
    gates = [
        GateResult("checks", checks_passed, "all blocking checks passed" if checks_passed else f"failed: {failed_checks}"),
        GateResult("examples", n_examples >= p.min_examples, f"{n_examples} examples (minimum {p.min_examples})"),
    ]
    if champion_metric is None or not math.isfinite(champion_metric):
        gates.append(GateResult("holdout_metric", True, f"no champion to compare; {metric_name}={challenger_metric:.5f}"))
    else:
        bound = champion_metric * (1 + p.max_metric_regression)
        gates.append(
            GateResult(
                "holdout_metric",
                challenger_metric <= bound,
                f"{metric_name} {challenger_metric:.5f} vs champion {champion_metric:.5f} (allowed up to {bound:.5f})",
            )
        )
    if p.require_positive_lift:
        if lift_lower_bound is None:
            gates.append(GateResult("lift", False, "no off-policy lift estimate"))
        else:
            gates.append(
                GateResult(
                    "lift",
                    lift_lower_bound > 0,
                    f"objective lift {lift_value:+.5f}, lower {p.min_lift_confidence:.0%} bound {lift_lower_bound:+.5f}",
                )
            )
    for g in bp.objective.guardrails:
        inc = guardrails.get(g.label, math.nan)
        gates.append(
            GateResult(
                f"guardrail_{g.label}",
                math.isfinite(inc) and inc <= g.max_increase,
                f"increase {inc:+.5f} (bound {g.max_increase:+.5f})",
            )
        )
    return PromotionDecision(all(g.passed for g in gates), gates)
