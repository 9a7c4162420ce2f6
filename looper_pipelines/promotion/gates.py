"""Whether a challenger may replace the champion, with the reason for every gate."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.evaluation.dr_scores import GuardrailEstimate
from looper_pipelines.ope import PolicyValue


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
    default_lift: PolicyValue | None,
    champion_lift: PolicyValue | None,
    guardrails: Mapping[str, GuardrailEstimate],
    default_text: str = "the default action",
    champion_text: str = "the champion",
    incumbent_guardrails: Mapping[str, GuardrailEstimate] | None = None,
    incumbent_text: str = "the default action",
) -> PromotionDecision:
    """All gates as the blueprint sets them. ``*_metric`` is a loss (lower is better)
    measured on the same holdout; ``default_lift`` and ``champion_lift`` are the off-policy
    lifts of the challenger's policy over the default action's and over the champion's
    (None on a cold start), with two-sided ``min_lift_confidence`` intervals; guardrails
    are the challenger's estimates. A guardrail the incumbent (the champion, or the default
    action on a cold start; ``incumbent_guardrails``) already breaks passes when the
    challenger breaks it by less: promoting it moves towards the bound."""
    p = bp.promotion
    conf = f"lower {p.min_lift_confidence:.0%} bound"
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
                f"{metric_name} out of sample {challenger_metric:.5f} vs champion {champion_metric:.5f} "
                f"(allowed up to {bound:.5f})",
            )
        )
    if p.require_positive_lift:
        if default_lift is None or not math.isfinite(default_lift.ci_low):
            gates.append(GateResult("lift", False, "no off-policy lift estimate"))
        else:
            gates.append(GateResult("lift", default_lift.ci_low > 0,
                                    f"objective lift over {default_text} {default_lift.value:+.5f}, "
                                    f"{conf} {default_lift.ci_low:+.5f} (must be above 0)"))
    if champion_lift is not None:
        margin = p.max_lift_regression
        ok = math.isfinite(champion_lift.ci_low) and champion_lift.ci_low > -margin
        if margin > 0:
            ok = ok and champion_lift.value > 0
            rule = f"must be above {-margin:+.5f}, with the estimate above 0"
        else:
            rule = "must be above 0"
        gates.append(GateResult("lift_over_champion", ok,
                                f"objective lift over {champion_text} {champion_lift.value:+.5f}, "
                                f"{conf} {champion_lift.ci_low:+.5f} ({rule})"))
    for g in bp.objective.guardrails:
        est = guardrails.get(g.label)
        inc = (incumbent_guardrails or {}).get(g.label)
        if est is None:
            gates.append(GateResult(f"guardrail_{g.label}", False, "no estimate"))
            continue
        detail = est.describe(g.max_increase, g.max_value)
        passed = est.holds
        if not passed and inc is not None and not inc.holds and est.excess < inc.excess:
            passed = True
            detail += f"; broken, but by less than {incumbent_text} ({inc.describe(g.max_increase, g.max_value)})"
        gates.append(GateResult(f"guardrail_{g.label}", passed, detail))
    return PromotionDecision(all(g.passed for g in gates), gates)
