"""The closed loop on the simulated product, and the promotion gate / rollback around it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from looper_pipelines.home import HomeLayout
from looper_pipelines.loop import RoundReport, run_loop
from looper_pipelines.registry import CHALLENGER, CHAMPION, ModelRegistry

UC = "notification_send"


@pytest.fixture(scope="module")
def loop_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[RoundReport]]:
    """``looper loop --use-case notification_send`` at its defaults (3 rounds of 3 days x 3,000 subjects)."""
    home = tmp_path_factory.mktemp("loop")
    reports = run_loop(home, UC, rounds=3, subjects=3000, days_per_round=3, seed=0, eval_subjects=20000)
    return home, reports


def test_loop_improves_decisions_to_near_oracle(loop_run: tuple[Path, list[RoundReport]]) -> None:
    _, reports = loop_run
    assert [r.round for r in reports] == [0, 1, 2]
    last = reports[-1]
    # the product leaves real room to win
    assert (last.oracle_value - last.best_constant_value) >= 0.15 * last.best_constant_value
    assert last.champion is not None
    assert last.share_of_oracle >= 0.90, [r.to_dict() for r in reports]
    assert last.share_of_lift >= 0.60, [r.to_dict() for r in reports]
    assert last.guardrail_value is not None and last.guardrail_bound is not None
    assert last.guardrail_value <= last.guardrail_bound
    # what exploration and the experiment cost is reported, and it shrinks as data grows
    assert all(r.exploration_cost >= 0 and r.experiment_cost >= 0 for r in reports)
    assert reports[-1].epsilon < reports[0].epsilon
    assert last.greedy_value - last.policy_value == pytest.approx(last.exploration_cost + last.experiment_cost, abs=1e-9)


def test_gate_refuses_a_worse_challenger_and_rollback_restores(loop_run: tuple[Path, list[RoundReport]]) -> None:
    from looper_pipelines.blueprints import load_catalog
    from looper_pipelines.client import LooperClient
    from looper_pipelines.evaluation.holdout import all_examples
    from looper_pipelines.promotion.flow import evaluate_and_promote
    from looper_pipelines.training import train_models
    from looper_pipelines.training.registration import register_challenger

    home, _ = loop_run
    layout = HomeLayout.of(home)
    registry = ModelRegistry(layout.tracking_uri, layout.artifact_root)
    bp = load_catalog(home)[UC]
    good = registry.by_alias(UC, CHAMPION)
    assert good is not None
    # a challenger trained on shuffled labels
    data = all_examples(bp, layout.warehouse)
    bad = train_models(bp, data, shuffle_labels=True)
    v = register_challenger(registry, bp, data, bad)
    assert registry.by_alias(UC, CHALLENGER).version == v.version  # type: ignore[union-attr]
    result = evaluate_and_promote(layout, registry, bp, failed_checks=[])
    assert result["promote"] is False
    assert any(r.startswith("FAIL holdout_metric") or r.startswith("FAIL lift") for r in result["reasons"]), result
    assert registry.by_alias(UC, CHAMPION).version == good.version  # type: ignore[union-attr]

    env = {**os.environ, "LOOPER_HOME": str(home)}
    looper = [sys.executable, "-m", "looper_pipelines.cli.main"]
    forced = subprocess.run([*looper, "promote", "--use-case", UC, "--reason", "test override", "--home", str(home)],
                            capture_output=True, text=True, env=env)
    assert forced.returncode == 0, forced.stderr
    assert registry.by_alias(UC, CHAMPION).version == v.version  # type: ignore[union-attr]
    with LooperClient.local(home, log_durability="disabled") as c:
        assert c.deployment(UC).model_version == v.version
    back = subprocess.run([*looper, "rollback", "--use-case", UC, "--home", str(home)], capture_output=True, text=True, env=env)
    assert back.returncode == 0, back.stderr
    assert registry.by_alias(UC, CHAMPION).version == good.version  # type: ignore[union-attr]
    with LooperClient.local(home, log_durability="disabled") as c:
        dep = c.deployment(UC)
        assert dep.model_version == good.version
        assert dep.policy_version == good.tags["policy_version"]
        d = c.get_decision(UC, "u1", {"tenure_days": 30.0, "hour_of_day": 20})
        assert d.model_version == good.version and set(d.scores) == {"click", "unsubscribe"}
    status = subprocess.run([*looper, "status", "--json", "--home", str(home)], capture_output=True, text=True, env=env)
    assert status.returncode == 0 and f'"version": "{good.version}"' in status.stdout
