"""The one-row policy path (``choose_one``, plain floats, used by ``get_decision``) picks
the same action as the vectorised one (``choose``, used offline) for every policy kind."""

from __future__ import annotations

import numpy as np
import pytest

from looper_pipelines.blueprints import load_catalog
from looper_pipelines.policies import (
    CATE_KEY,
    CateThresholdPolicy,
    DecisionPolicy,
    ThresholdPolicy,
    WeightedValuePolicy,
    build_policy,
)

WEIGHTS = {"click": 1.0, "unsubscribe": -4.0}


def _policies(k: int) -> list[DecisionPolicy]:
    multi = k > 2
    common = {"multi_action": multi, "treat": 0 if multi else 1, "control": 0}
    return [
        ThresholdPolicy(**common, params={"threshold": 0.01}, score_label="click"),
        WeightedValuePolicy(**common, params={"threshold": -0.02}, weights=WEIGHTS),
        WeightedValuePolicy(**common, params={"weight_unsubscribe": -11.5}, weights=WEIGHTS),
        WeightedValuePolicy(**common, params={}, weights={"click": 0.0}),  # all weights zero
        CateThresholdPolicy(**common, params={"cost": 0.003}, weights=WEIGHTS),
        CateThresholdPolicy(**common, params={"threshold": 0.0}, weights=WEIGHTS),
    ]


@pytest.mark.parametrize("k", [2, 5])
@pytest.mark.parametrize("with_cate", [False, True])
def test_choose_one_agrees_with_choose(k: int, with_cate: bool) -> None:
    rng = np.random.default_rng(k)
    n = 2_000
    scores = {
        "click": rng.random((n, k)) * 0.2,
        "unsubscribe": rng.random((n, k)) * 0.02,
    }
    # exact ties and near-threshold gains, where the two paths could part
    scores["click"][:200] = np.round(scores["click"][:200], 2)
    scores["unsubscribe"][:200] = 0.0
    if with_cate:
        scores[CATE_KEY] = rng.normal(0, 0.01, (n, k))
    for policy in _policies(k):
        batch = policy.choose(scores)
        one = [policy.choose_one({name: s[i].tolist() for name, s in scores.items()}) for i in range(n)]
        assert one == batch.tolist(), type(policy).__name__
        assert all(type(a) is int for a in one)


@pytest.mark.parametrize("use_case", ["notification_send", "item_recommendation"])
def test_choose_one_agrees_for_the_catalog_policies(use_case: str) -> None:
    bp = load_catalog()[use_case]
    k = len(bp.decision.actions)
    rng = np.random.default_rng(7)
    scores = {label: rng.random((500, k)) for label in bp.label_names}
    for params in ({}, {p.name: p.high for p in bp.policy.parameters}, {p.name: p.low for p in bp.policy.parameters}):
        policy = build_policy(bp, params)
        one = [policy.choose_one({name: s[i].tolist() for name, s in scores.items()}) for i in range(500)]
        assert one == policy.choose(scores).tolist()
