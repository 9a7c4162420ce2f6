"""The offline graph end to end through Dagster's own APIs, on simulated traffic."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from looper_pipelines.home import HomeLayout
from looper_pipelines.logs import LogStore, read_decisions, read_observations
from looper_pipelines.logs.records import DECISIONS, OBSERVATIONS
from looper_pipelines.registry import CHALLENGER, ModelRegistry
from looper_pipelines.simulation import run_simulation

UC = "notification_send"


def _checks(result) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    out = {}
    for ev in result.all_events:
        if ev.event_type_value == "ASSET_CHECK_EVALUATION":
            out[ev.event_specific_data.check_name] = ev.event_specific_data.passed
    return out


def _materialized(result) -> set[str]:  # type: ignore[no-untyped-def]
    return {ev.asset_key.to_user_string() for ev in result.all_events if ev.event_type_value == "ASSET_MATERIALIZATION"}


@pytest.fixture(scope="module")
def graph_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("graph")
    run_simulation(home, UC, subjects=2500, days=3, seed=11, start="2026-01-05")
    return home


def test_whole_graph_registers_an_evaluated_model(graph_home: Path) -> None:
    from looper_pipelines.orchestration import Orchestrator

    orch = Orchestrator(str(graph_home))
    data = orch.materialize_data(UC, "2026-01-05", "2026-01-07")
    assert data.success
    checks = _checks(data)
    assert checks and all(checks.values()), checks
    mats = _materialized(data)
    assert {f"{UC}/decision_logs", f"{UC}/stg_decisions", f"{UC}/int_decision_labels",
            f"{UC}/fct_training_examples", f"{UC}/fct_experiment_outcomes"} <= mats
    models = orch.materialize_models(UC)
    assert models.success
    assert {f"{UC}/trained_model", f"{UC}/offline_evaluation", f"{UC}/hte_evaluation", f"{UC}/tuned_policy",
            f"{UC}/promotion"} <= _materialized(models)

    layout = HomeLayout.of(graph_home)
    registry = ModelRegistry(layout.tracking_uri, layout.artifact_root)
    v = registry.by_alias(UC, CHALLENGER)
    assert v is not None and CHALLENGER in v.aliases
    assert v.tags["blueprint_version"] == orch.defs.resources["looper_home"].blueprint(UC).version
    assert v.tags["partitions"] == "2026-01-05..2026-01-07"
    for metric in ("click.auc", "click.log_loss", "unsubscribe.log_loss", "n_train", "n_valid", "ope.dr.value", "hte.ate"):
        assert metric in v.metrics, metric
    assert 0.5 < v.metrics["click.auc"] <= 1.0
    assert "policy_params" in v.tags and "policy_version" in v.tags
    import mlflow

    files = {a.path for a in mlflow.MlflowClient(layout.tracking_uri).list_artifacts(v.run_id, "plots")}
    assert {"plots/calibration_click.png", "plots/importance_click.png", "plots/qini.png",
            "plots/tuning_history.png"} <= files
    labels = {a.path for a in mlflow.MlflowClient(layout.tracking_uri).list_artifacts(v.run_id, "label_models")}
    assert labels == {"label_models/click.txt", "label_models/unsubscribe.txt"}
    history = (layout.state / "promotions" / f"{UC}.jsonl").read_text().splitlines()
    entry = json.loads(history[-1])
    assert entry["challenger"] == v.version and entry["reasons"]
    # every decision of the window reached the mart exactly once, labelled
    import duckdb

    con = duckdb.connect(str(layout.warehouse), read_only=True)
    n_mart, n_unique = con.execute(f"select count(*), count(distinct decision_id) from {UC}.fct_training_examples").fetchone()  # type: ignore[misc]
    con.close()
    assert n_mart == n_unique == read_decisions(graph_home, UC).height


def test_bad_data_fails_blocking_checks_and_stops_training(tmp_path: Path) -> None:
    from looper_pipelines.orchestration import Orchestrator

    home = tmp_path / "bad"
    run_simulation(home, UC, subjects=600, days=2, seed=5, start="2026-01-05")
    decisions = read_decisions(home, UC)
    first = decisions.row(0, named=True)
    with LogStore(home) as store:
        dup = dict(first, features=json.loads(first["features"]), scores=json.loads(first["scores"]),
                   timestamp=int(first["timestamp"].timestamp() * 1e6))
        store.append(DECISIONS, UC, dup)  # the same decision id twice
        store.append(OBSERVATIONS, UC, {"observation_id": "leak-1", "decision_id": first["decision_id"], "use_case": UC,
                                        "name": "click", "value": 1.0, "timestamp": dup["timestamp"] - 60_000_000})
    assert read_observations(home, UC).filter(read_observations(home, UC)["observation_id"] == "leak-1").height == 1
    orch = Orchestrator(str(home))
    data = orch.materialize_data(UC, "2026-01-05", "2026-01-06")
    checks = _checks(data)
    assert checks["decisions_unique_ids"] is False
    assert checks["observations_not_before_decision"] is False
    assert checks["decisions_schema"] is True
    assert f"{UC}/fct_training_examples" not in _materialized(data)  # blocked before dbt
    models = orch.materialize_models(UC)
    assert not models.success
    assert f"{UC}/trained_model" not in _materialized(models)
    failure = next(ev for ev in models.all_events if ev.event_type_value == "STEP_FAILURE")
    assert "blocking data-quality checks failed" in str(failure.event_specific_data.error.cause or failure.event_specific_data.error)
    layout = HomeLayout.of(home)
    assert ModelRegistry(layout.tracking_uri, layout.artifact_root).by_alias(UC, CHALLENGER) is None


def test_a_registry_does_not_leave_its_store_in_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's set_tracking_uri writes MLFLOW_TRACKING_URI; the next home built in the same
    process would have taken it for the user's setting and used the wrong store."""
    import os

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    a = HomeLayout.of(tmp_path / "a")
    registry = ModelRegistry(a.tracking_uri, a.artifact_root)
    run = registry.client.create_run(registry.experiment_id(UC))
    registry.log_to_run(run.info.run_id, {"m": 1.0}, {"notes.txt": "x"})
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert registry.client.get_run(run.info.run_id).data.metrics == {"m": 1.0}
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "sqlite:////somewhere/else.db")  # the user's setting
    registry.log_to_run(run.info.run_id, {"n": 2.0}, {})
    assert os.environ["MLFLOW_TRACKING_URI"] == "sqlite:////somewhere/else.db"
    assert registry.client.get_run(run.info.run_id).data.metrics == {"m": 1.0, "n": 2.0}
