"""Tuning and promotion on cross-fitted scores: tuning keeps the declared parameters when
the data has no signal and accepts a real gain; the gate's verdict on a clear case does
not depend on the split; a cold start never promotes a policy worse than the default."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from looper_pipelines.blueprints import Blueprint, load_catalog
from looper_pipelines.client.features import FeatureEncoder
from looper_pipelines.evaluation.policy_value import LoggedData
from looper_pipelines.policies import Mixing
from looper_pipelines.promotion.judge import ChampionView, Contender, judge
from looper_pipelines.simulation import get_simulator
from looper_pipelines.training import train_models
from looper_pipelines.training.crossfit import assign_folds
from looper_pipelines.training.dataset import TrainingSet
from looper_pipelines.tuning import tune_policy

UC = "notification_send"


def _blueprint(**policy: object) -> Blueprint:
    d = load_catalog()[UC].model_dump(mode="json")
    d["policy"].update(policy)
    return Blueprint.model_validate(d)


def _noise_data(n: int, seed: int) -> tuple[LoggedData, np.ndarray]:
    """Randomised logs whose outcomes do not depend on the action, with predictions that
    are pure noise around the base rates."""
    rng = np.random.default_rng(seed)
    action = rng.integers(0, 2, n)
    labels = {"click": (rng.random(n) < 0.1).astype(float), "unsubscribe": (rng.random(n) < 0.004).astype(float)}
    scores = {"click": np.clip(0.1 + rng.normal(0, 0.03, (n, 2)), 0, 1),
              "unsubscribe": np.clip(0.004 + rng.normal(0, 0.002, (n, 2)), 0, 1)}
    return LoggedData(action, np.full(n, 0.5), labels, scores), assign_folds([str(i) for i in range(n)], 5, seed)


def test_tuning_on_data_without_signal_keeps_the_declared_parameters() -> None:
    """Where no policy is better than another, the search alone moves the parameters most
    of the time; accepted are only the (about 1 in 10, the bound's confidence being 90%)
    held-out gains that pass by chance."""
    bp = _blueprint(trials=15)
    accepted, moved = 0, 0
    for seed in range(20):
        data, folds = _noise_data(3000, seed)
        result = tune_policy(bp, data, folds, seed=0)
        moved += result.tuned != bp.policy.values
        if result.accepted:
            accepted += 1
            continue
        assert result.params == bp.policy.values
        assert result.reason.startswith("kept the declared parameters"), result.reason
        assert len(result.fold_params) == 5 and set(result.uncertainty) == set(bp.policy.values)
    assert moved >= 8, moved
    assert accepted <= 4, accepted


def test_tuning_accepts_a_real_gain_and_reports_its_uncertainty() -> None:
    # declared: treat only above a gain of 0.09 (almost never); the truth: half the rows gain 0.05
    bp = _blueprint(parameters=[{"name": "weight_unsubscribe", "value": -4.0, "low": -20.0, "high": 0.0},
                                {"name": "threshold", "value": 0.09, "low": -0.05, "high": 0.1}])
    rng = np.random.default_rng(3)
    n = 6000
    gain = np.where(rng.random(n) < 0.5, 0.05, -0.05)
    p_click = np.column_stack([np.full(n, 0.1), 0.1 + gain])  # (dont_send, send)
    action = rng.integers(0, 2, n)
    labels = {"click": (rng.random(n) < p_click[np.arange(n), action]).astype(float), "unsubscribe": np.zeros(n)}
    scores = {"click": np.clip(p_click + rng.normal(0, 0.01, (n, 2)), 0, 1), "unsubscribe": np.zeros((n, 2))}
    data = LoggedData(action, np.full(n, 0.5), labels, scores)
    result = tune_policy(bp, data, assign_folds([str(i) for i in range(n)], 5, 0), seed=0, n_trials=25)
    assert result.accepted, result.reason
    assert result.params["threshold"] < 0.05 and result.improvement["ci_low"] > 0
    assert result.uncertainty["threshold"]["max"] < 0.05


def _randomised_logs(n: int, seed: int) -> tuple[Blueprint, TrainingSet]:
    """Uniformly randomised notification logs from the simulator (the truth is known)."""
    sim = get_simulator(UC, seed=seed)
    bp = sim.blueprint
    visits = sim.sample_visits(n, day=0, seed=seed)
    x = np.asarray(FeatureEncoder(bp).encode_many(visits.rows()), dtype=np.float64)
    truth = sim.expected_outcomes(visits)
    rng = np.random.default_rng(seed)
    action = rng.integers(0, 2, n)
    labels = {k: (rng.random(n) < v[np.arange(n), action]).astype(float) for k, v in truth.items()}
    frame = pl.DataFrame({"decision_id": [f"d{i}" for i in range(n)], "subject_id": [f"s{i}" for i in range(n)],
                          "decided_at": np.arange(n, dtype=np.int64)})
    return bp, TrainingSet(x, action, labels, np.full(n, 0.5), np.repeat(np.arange(4), n // 4 + 1)[:n].astype(np.int32),
                           frame)


@pytest.fixture(scope="module")
def clear_case() -> tuple[Blueprint, TrainingSet]:
    return _randomised_logs(6000, 0)


def test_the_gate_gives_the_same_verdict_under_ten_split_seeds(clear_case: tuple[Blueprint, TrainingSet]) -> None:
    bp, data = clear_case
    verdicts, lows = [], []
    for split_seed in range(10):
        trained = train_models(bp, data, seed=split_seed)
        assert trained.crossfit is not None
        cf = trained.crossfit.scores
        result = judge(bp, data, cf, Contender(cf, bp.policy.values, Mixing.for_examples(bp, len(data))), None,
                       failed_checks=[], n_examples=len(data))
        verdicts.append(result.decision.promote)
        lows.append(result.default_lift.ci_low)
    assert all(verdicts), lows  # a model of a product with a large effect beats always-send, whatever the folds
    assert np.std(lows) < 0.25 * np.mean(lows)


def test_a_cold_start_never_promotes_a_policy_worse_than_the_default(clear_case: tuple[Blueprint, TrainingSet]) -> None:
    bp, data = clear_case
    trained = train_models(bp, data, seed=0)
    assert trained.crossfit is not None
    cf = trained.crossfit.scores
    # the same models, choosing the action they predict to be worse
    worse = {label: s[:, ::-1] for label, s in cf.items()}
    result = judge(bp, data, cf, Contender(worse, bp.policy.values, Mixing.for_examples(bp, len(data))), None,
                   failed_checks=[], n_examples=len(data))
    assert not result.decision.promote
    assert result.default_lift.ci_low < 0
    assert any(r.startswith("FAIL lift:") for r in result.decision.reasons)


def test_a_champion_is_replaced_only_by_a_challenger_not_worse_with_confidence(
        clear_case: tuple[Blueprint, TrainingSet]) -> None:
    bp, data = clear_case
    trained = train_models(bp, data, seed=0)
    assert trained.crossfit is not None
    cf = trained.crossfit.scores
    good = Contender(cf, bp.policy.values, Mixing.for_examples(bp, len(data)))
    worse = Contender({label: s[:, ::-1] for label, s in cf.items()}, bp.policy.values, good.mixing)
    kept = judge(bp, data, cf, worse, ChampionView(good, None, "champion 1"), failed_checks=[], n_examples=len(data))
    assert not kept.decision.promote
    assert any(r.startswith("FAIL lift_over_champion") for r in kept.decision.reasons)
    replaced = judge(bp, data, cf, good, ChampionView(worse, None, "champion 1"), failed_checks=[],
                     n_examples=len(data))
    assert any(r.startswith("PASS lift_over_champion") for r in replaced.decision.reasons), replaced.decision.reasons


def test_a_binding_guardrail_that_the_default_breaks(clear_case: tuple[Blueprint, TrainingSet]) -> None:
    """Always sending (the default) breaks a tight unsubscribe guardrail: tuning trades
    clicks for unsubscribes and is accepted for breaking it less, held out, and the gate
    lets through a challenger that breaks it less than the default action does."""
    _, data = clear_case
    d = load_catalog()[UC].model_dump(mode="json")
    d["objective"]["guardrails"][0]["max_increase"] = 0.001
    bp = Blueprint.model_validate(d)
    trained = train_models(bp, data, seed=0)
    assert trained.crossfit is not None
    cf = trained.crossfit.scores
    logged = LoggedData(data.action, data.propensity, data.labels, cf)
    mixing = Mixing.for_examples(bp, len(data))
    result = tune_policy(bp, logged, trained.crossfit.folds, seed=0, n_trials=25, mixing=mixing)
    assert result.accepted and "the declared ones break a guardrail" in result.reason, result.reason
    assert result.params["weight_unsubscribe"] < bp.policy.values["weight_unsubscribe"] or (
        result.params["threshold"] > bp.policy.values["threshold"])
    verdict = judge(bp, data, cf, Contender(cf, result.params, mixing), None, failed_checks=[], n_examples=len(data))
    gate = next(g for g in verdict.decision.gates if g.name == "guardrail_unsubscribe")
    assert gate.passed, gate.detail
    worse = judge(bp, data, cf, Contender({k: v[:, ::-1] for k, v in cf.items()}, result.params, mixing), None,
                  failed_checks=[], n_examples=len(data))
    assert not worse.decision.promote
