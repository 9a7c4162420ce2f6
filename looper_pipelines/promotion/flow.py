"""Promotion, manual override and rollback; and exporting the champion for serving.

Only this module moves the registry's ``champion`` alias."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import numpy as np

from looper_pipelines.blueprints.model import Blueprint
from looper_pipelines.features import input_names
from looper_pipelines.home import HomeLayout
from looper_pipelines.policies import Mixing
from looper_pipelines.promotion.history import PromotionHistory
from looper_pipelines.registry import (
    CHALLENGER,
    CHAMPION,
    ModelRegistry,
    RegisteredVersion,
    registered_model_name,
)
from looper_pipelines.serving.manifest import ArtifactError
from looper_pipelines.serving.publish import PARITY_TOLERANCE


def policy_params(version: RegisteredVersion | None, bp: Blueprint) -> dict[str, float]:
    if version is None or "policy_params" not in version.tags:
        return dict(bp.policy.values)
    return {k: float(v) for k, v in json.loads(version.tags["policy_params"]).items()}


def policy_version(version: RegisteredVersion, bp: Blueprint) -> str:
    return version.tags.get("policy_version", bp.policy_version)


def served_mixing(version: RegisteredVersion | None, bp: Blueprint) -> Mixing:
    """The exploration and experiment a version is served with (the cold start's without
    one): fixed when it was trained, from the examples it was trained on."""
    if version is None:
        return Mixing.cold_start(bp)
    default = Mixing.for_examples(bp, version.metrics.get("n_examples", 0.0))
    tags = version.tags
    return Mixing(float(tags.get("exploration_epsilon", default.epsilon)),
                  float(tags.get("experiment_share", default.experiment_share)))


def champion_scores(
    registry: ModelRegistry, champion: RegisteredVersion, bp: Blueprint, data: Any, models: dict[str, Any]
) -> tuple[dict[str, np.ndarray], np.ndarray | None, str]:
    """The champion's predictions for every action of every example, the examples to
    compare it on (None: all) and a note saying which.

    The comparison uses the examples decided after the champion was trained when there are
    at least ``promotion.min_examples`` of them: on the examples it was chosen on, a
    champion keeps the luck that got it promoted, and on those it was fitted on, its fit.
    With fewer, every example is used, those it was trained on scored out of fold."""
    from looper_pipelines.evaluation.scoring import action_scores
    from looper_pipelines.training.crossfit import load_crossfit
    from looper_pipelines.training.dataset import decided_at_us

    scores = action_scores(models, data.x, len(bp.decision.actions))
    cutoff = champion.tags.get("trained_through_us")
    if cutoff is not None:
        rows = np.flatnonzero(decided_at_us(data) > int(cutoff))
        if rows.size >= max(bp.promotion.min_examples, 2):
            return scores, rows, f"on the {rows.size} examples decided since it was trained"
    ids = data.frame["decision_id"].to_list()
    own = load_crossfit(registry, champion, bp, required=False)
    if own is not None:
        scores, known = own.overlay(ids, scores)
        return scores, None, (f"on all {len(ids)} examples, too few decided since it was trained; "
                              f"{known} scored out of fold")
    return scores, None, "on all examples, some of which it was trained on (favouring it)"


def evaluate_and_promote(
    layout: HomeLayout, registry: ModelRegistry, bp: Blueprint, failed_checks: list[str]
) -> dict[str, Any]:
    """Judge the challenger against the champion (or, on a cold start, the default action)
    with ``judge.judge`` and move the champion alias when every gate passes."""
    from looper_pipelines.evaluation.holdout import all_examples
    from looper_pipelines.promotion.judge import ChampionView, Contender, judge
    from looper_pipelines.training.crossfit import load_crossfit

    uc = bp.name
    history = PromotionHistory(layout.state, uc)
    challenger = registry.by_alias(uc, CHALLENGER)
    if challenger is None:
        raise ValueError(f"no challenger registered for {uc}")
    champion = registry.by_alias(uc, CHAMPION)
    if champion is not None and champion.version == challenger.version:
        return {"promote": False, "reasons": ["challenger is already the champion"], "challenger": challenger.version}
    data = all_examples(bp, layout.warehouse)
    crossfit = load_crossfit(registry, challenger, bp, data.frame["decision_id"].to_list())
    view = None
    if champion is not None and champion.tags.get("lineage_version") == bp.lineage_version:
        champ_scores, rows, seen = champion_scores(registry, champion, bp, data, registry.load_label_models(champion))
        view = ChampionView(Contender(champ_scores, policy_params(champion, bp), served_mixing(champion, bp)), rows,
                            f"champion {champion.version} ({seen})")
    verdict = judge(
        bp, data, crossfit.scores,
        Contender(crossfit.scores, policy_params(challenger, bp), served_mixing(challenger, bp)), view,
        failed_checks=failed_checks,
        n_examples=int(challenger.metrics.get("n_examples", challenger.metrics.get("n_train", 0)
                                              + challenger.metrics.get("n_valid", 0))),
    )
    decision, default_lift, champion_lift = verdict.decision, verdict.default_lift, verdict.champion_lift
    guards, default_text, champion_text = verdict.guardrails, verdict.default_text, verdict.champion_text
    lift = champion_lift or default_lift
    entry = {
        "action": "promote" if decision.promote else "reject",
        "challenger": challenger.version,
        "previous_champion": champion.version if champion else None,
        "champion_set": decision.promote,
        "champion": challenger.version if decision.promote else (champion.version if champion else None),
        "policy_version": policy_version(challenger, bp),
        "reasons": decision.reasons,
        "lift": {"value": lift.value, "ci_low": lift.ci_low, "ci_high": lift.ci_high, "n": lift.n,
                 "against": champion_text or default_text},
        "lift_over_default": {"value": default_lift.value, "ci_low": default_lift.ci_low, "ci_high": default_lift.ci_high},
        "guardrails": {lb: g.excess for lb, g in guards.items()},
    }
    if decision.promote:
        registry.set_alias(uc, CHAMPION, challenger.version)
    registry.set_version_tags(uc, challenger.version, {"promotion": "promoted" if decision.promote else "rejected",
                                                        "promotion_reasons": "; ".join(decision.reasons)[:4000]})
    history.append(entry)
    return {"promote": decision.promote, **entry}


def promote_by_hand(layout: HomeLayout, registry: ModelRegistry, bp: Blueprint, reason: str,
                    version: str | None = None) -> dict[str, Any]:
    """Make ``version`` (default: the challenger) the champion and publish it; its serving
    artifact is built and verified first, so a failure moves nothing."""
    uc = bp.name
    target = registry.get(uc, version) if version else registry.by_alias(uc, CHALLENGER)
    if target is None:
        raise ValueError(f"no challenger registered for {uc}")
    champion = registry.by_alias(uc, CHAMPION)
    entry = {"action": "manual_promote", "champion_set": True, "champion": target.version,
             "previous_champion": champion.version if champion else None,
             "policy_version": policy_version(target, bp), "reasons": [f"manual override: {reason}"]}
    return move_champion(layout, registry, bp, target, entry)


def rollback_target(layout: HomeLayout, registry: ModelRegistry, bp: Blueprint) -> tuple[RegisteredVersion, str]:
    """The current champion and the version that was champion before it."""
    uc = bp.name
    current = registry.by_alias(uc, CHAMPION)
    if current is None:
        raise ValueError(f"{uc} has no champion to roll back")
    for e in reversed(PromotionHistory(layout.state, uc).champions()):
        if e.get("champion") == current.version and e.get("previous_champion"):
            return current, str(e["previous_champion"])
    raise ValueError(f"{uc}: no earlier champion recorded before version {current.version}")


def rollback(layout: HomeLayout, registry: ModelRegistry, bp: Blueprint) -> dict[str, Any]:
    """Restore the champion before the current one (and with it that version's policy),
    verified before anything moves."""
    current, previous = rollback_target(layout, registry, bp)
    entry = {"action": "rollback", "champion_set": True, "champion": previous, "previous_champion": current.version,
             "reasons": [f"rollback from version {current.version}"]}
    return move_champion(layout, registry, bp, registry.get(bp.name, previous), entry)


def move_champion(layout: HomeLayout, registry: ModelRegistry, bp: Blueprint, target: RegisteredVersion,
                  entry: dict[str, Any]) -> dict[str, Any]:
    """Build (if needed) and verify ``target``'s serving artifact, then move the champion
    alias, publish the artifact and record ``entry``; returns it with ``serving_version``.
    Raises ``ArtifactError`` with nothing changed when the artifact does not verify."""
    from looper_pipelines.serving.publish import activate

    checked = verified_artifact(layout, registry, bp, target)
    uc = bp.name
    before = registry.by_alias(uc, CHAMPION)
    registry.set_alias(uc, CHAMPION, target.version)
    try:
        activate(layout, uc, checked.version_id)
    except BaseException:
        if before is None:
            registry.client.delete_registered_model_alias(registered_model_name(uc), CHAMPION)
        else:
            registry.set_alias(uc, CHAMPION, before.version)
        raise
    entry = {**entry, "serving_version": checked.version_id}
    PromotionHistory(layout.state, uc).append(entry)
    return entry


def verified_artifact(layout: HomeLayout, registry: ModelRegistry, bp: Blueprint,
                      version: RegisteredVersion) -> CheckedArtifact:
    """``version``'s serving artifact, built if missing, its files checked against their
    recorded SHA-256 and its predictions against LightGBM; ``ArtifactError`` (one line)
    otherwise. Changes nothing that is served."""
    from looper_pipelines.serving.publish import version_dir
    from looper_pipelines.serving.runtime import LineageError, describe_failure

    vid = serving_version_id(version, bp)
    try:
        checked = build_and_check_version(layout, registry, bp, version)
    except ArtifactError as e:
        hint = "" if isinstance(e, LineageError) else (
            f" (remove {version_dir(layout, bp.name, vid)} to rebuild it from the registry)")
        raise ArtifactError(f"version {version.version}: serving artifact {vid} does not verify "
                            f"({describe_failure(e)}); champion and serving unchanged{hint}") from None
    if not checked.parity_ok:
        raise ArtifactError(
            f"version {version.version}: compiled artifact {vid} differs from LightGBM by {checked.max_abs_diff:g} "
            f"(tolerance {PARITY_TOLERANCE:g}); champion and serving unchanged"
        )
    return checked


def serving_version_id(version: RegisteredVersion, bp: Blueprint) -> str:
    return f"m{version.version}-{policy_version(version, bp)}"


def build_champion_artifact(layout: HomeLayout, registry: ModelRegistry, bp: Blueprint) -> tuple[str, RegisteredVersion, dict[str, Any]]:
    """Compile the champion's label models (if not built yet); returns the version id."""
    champion = registry.by_alias(bp.name, CHAMPION)
    if champion is None:
        raise ValueError(f"{bp.name} has no champion to export")
    return build_version_artifact(layout, registry, bp, champion)


def build_version_artifact(layout: HomeLayout, registry: ModelRegistry, bp: Blueprint,
                           champion: RegisteredVersion) -> tuple[str, RegisteredVersion, dict[str, Any]]:
    """Compile a registered version's label models (if not built yet); returns the version id."""
    from looper_pipelines.serving.publish import build_artifact, version_dir
    from looper_pipelines.serving.runtime import DEPLOYMENT

    vid = serving_version_id(champion, bp)
    boosters = registry.load_label_models(champion)
    if not (version_dir(layout, bp.name, vid) / DEPLOYMENT).exists():
        build_artifact(layout, bp.name, vid, boosters, input_names(bp), {
            "model_version": champion.version,
            "policy_version": policy_version(champion, bp),
            "policy_params": policy_params(champion, bp),
            "exploration_epsilon": served_mixing(champion, bp).epsilon,
            "experiment_share": served_mixing(champion, bp).experiment_share,
            "blueprint_version": bp.version,
            "lineage_version": bp.lineage_version,
            "run_id": champion.run_id,
        })
    return vid, champion, boosters


@dataclass(frozen=True)
class CheckedArtifact:
    """The champion's compiled serving artifact and its parity check on the holdout."""

    version_id: str
    model_version: str
    diffs: dict[str, float]  # max abs difference per label
    rows: int

    @property
    def max_abs_diff(self) -> float:
        return max(self.diffs.values()) if self.diffs else 0.0

    @property
    def parity_ok(self) -> bool:
        return self.max_abs_diff <= PARITY_TOLERANCE


def build_and_check_champion(layout: HomeLayout, registry: ModelRegistry, bp: Blueprint) -> CheckedArtifact:
    """Compile the champion (if not built yet) and compare it with LightGBM on the holdout."""
    champion = registry.by_alias(bp.name, CHAMPION)
    if champion is None:
        raise ValueError(f"{bp.name} has no champion to export")
    return build_and_check_version(layout, registry, bp, champion)


def build_and_check_version(layout: HomeLayout, registry: ModelRegistry, bp: Blueprint,
                            version: RegisteredVersion) -> CheckedArtifact:
    """Compile a registered version (if not built yet), check its files against their
    recorded SHA-256 (``ArtifactError`` if they differ) and compare it with LightGBM on the
    holdout."""
    from looper_pipelines.evaluation.holdout import all_examples, holdout
    from looper_pipelines.serving.publish import parity
    from looper_pipelines.serving.runtime import verify_version

    vid, champion, boosters = build_version_artifact(layout, registry, bp, version)
    verify_version(layout, bp, vid)
    valid = holdout(bp, all_examples(bp, layout.warehouse))
    diffs = parity(layout, bp.name, vid, boosters, valid.x_with_action)
    return CheckedArtifact(vid, str(champion.version), diffs, int(valid.x.shape[0]))
