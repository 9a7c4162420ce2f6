"""The promotion gates' evidence, from data alone: a challenger's policy against the
default action and against the champion's, on the same cross-fitted doubly robust scores.

The challenger's policy chooses on its out-of-fold predictions (models that never saw the
example, as a deployed model meets new decisions) and the same predictions give every
example's doubly robust scores. The champion's policy chooses on its own predictions, on
examples it did not see (``champion.rows``). All three are mixed with the exploration and
experiment the challenger would be served with, so the lifts compare decisions, not
exploration schedules (a challenger does not win by exploring less).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.evaluation.dr_scores import DRScores, GuardrailEstimate
from looper_pipelines.evaluation.holdout import logged_action_loss, primary_metric
from looper_pipelines.evaluation.policy_value import LoggedData
from looper_pipelines.ope import PolicyValue
from looper_pipelines.policies import Mixing, build_policy, deployed_probabilities
from looper_pipelines.promotion.gates import PromotionDecision, decide_promotion
from looper_pipelines.training.dataset import TrainingSet


@dataclass(frozen=True)
class Contender:
    """A policy as it would serve: per-action predictions to choose on, its parameters and
    its mixing."""

    scores: Mapping[str, np.ndarray]
    params: Mapping[str, float]
    mixing: Mixing

    def probabilities(self, bp: Blueprint, mixing: Mixing | None = None) -> np.ndarray:
        """(n, K) probabilities served with ``mixing`` (default: its own)."""
        return deployed_probabilities(bp, build_policy(bp, dict(self.params)).choose(self.scores),
                                      mixing or self.mixing)


@dataclass(frozen=True)
class ChampionView:
    contender: Contender
    rows: np.ndarray | None  # examples to compare on (None: all)
    text: str  # "champion 3 (on the 4312 examples decided since it was trained)"


@dataclass(frozen=True)
class Judgement:
    decision: PromotionDecision
    default_lift: PolicyValue
    champion_lift: PolicyValue | None
    guardrails: dict[str, GuardrailEstimate]
    default_text: str
    champion_text: str


def judge(
    bp: Blueprint,
    data: TrainingSet,
    crossfit_scores: Mapping[str, np.ndarray],
    challenger: Contender,
    champion: ChampionView | None,
    *,
    failed_checks: list[str],
    n_examples: int,
) -> Judgement:
    """Every gate's verdict for ``challenger`` (its ``scores`` should be the out-of-fold
    ``crossfit_scores``) against the default action and ``champion``."""
    logged = LoggedData(action=data.action.astype(np.int64), propensity=data.propensity, labels=data.labels,
                        scores=dict(crossfit_scores))
    dr = DRScores.from_logged(logged)
    alpha = 2 * (1 - bp.promotion.min_lift_confidence)
    weights = bp.objective.weights
    target = challenger.probabilities(bp)
    default = np.full(logged.n, bp.decision.actions.index(bp.decision.default_action))
    default_text = f"the default action {bp.decision.default_action!r}"
    default_probs = deployed_probabilities(bp, default, challenger.mixing)
    default_lift = dr.lift(target, default_probs, weights, alpha)
    incumbent, incumbent_text = dr.guardrails(bp, default_probs), default_text
    champion_lift, champion_text = None, ""
    ch_loss = logged_action_loss(bp, data, logged.scores)
    champ_loss = None
    if champion is not None:
        rows = champion.rows
        baseline = champion.contender.probabilities(bp, challenger.mixing)
        champion_text = champion.text
        incumbent, incumbent_text = dr.guardrails(bp, baseline), champion.text.split(" (")[0]
        ch_loss = logged_action_loss(bp, data, logged.scores, rows)
        champ_loss = logged_action_loss(bp, data, champion.contender.scores, rows)
        if rows is None:
            champion_lift = dr.lift(target, baseline, weights, alpha)
        else:
            champion_lift = dr.lift(target[rows], baseline[rows], weights, alpha, rows)
    guards = dr.guardrails(bp, target)
    decision = decide_promotion(
        bp,
        checks_passed=not failed_checks,
        failed_checks=failed_checks,
        n_examples=n_examples,
        challenger_metric=float(ch_loss),
        champion_metric=champ_loss,
        metric_name=primary_metric(bp),
        default_lift=default_lift,
        champion_lift=champion_lift,
        guardrails=guards,
        default_text=default_text,
        champion_text=champion_text,
        incumbent_guardrails=incumbent,
        incumbent_text=incumbent_text,
    )
    return Judgement(decision, default_lift, champion_lift, guards, default_text, champion_text)
