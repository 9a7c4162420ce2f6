"""Data checks generated from the blueprint, judged per day of the run that evaluates them:
a bad feature or a dropped volume blocks training; another day's data does not fail a run."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from looper_pipelines.blueprints import load_catalog
from looper_pipelines.home import HomeLayout
from looper_pipelines.logs import LogStore, compact, read_decisions
from looper_pipelines.logs.records import DECISIONS
from looper_pipelines.quality import LogQuality
from looper_pipelines.quality.outcomes import failed_blocking_checks
from looper_pipelines.registry import CHALLENGER, ModelRegistry
from looper_pipelines.simulation import run_simulation

UC = "notification_send"


def _checks(result) -> dict[str, bool]:  # type: ignore[no-untyped-def]
    return {ev.event_specific_data.check_name: ev.event_specific_data.passed
            for ev in result.all_events if ev.event_type_value == "ASSET_CHECK_EVALUATION"}


def _materialized(result) -> set[str]:  # type: ignore[no-untyped-def]
    return {ev.asset_key.to_user_string() for ev in result.all_events if ev.event_type_value == "ASSET_MATERIALIZATION"}


def _append_like(home: Path, template: dict, n: int, day: str, **features: object) -> None:
    """``n`` decisions copied from ``template`` on ``day`` with ``features`` overridden (a
    value of ``...`` removes the feature), as a writer that skips the SDK would log them."""
    ts = int(datetime.fromisoformat(f"{day}T12:00:00").replace(tzinfo=UTC).timestamp() * 1e6)
    base = json.loads(template["features"])
    with LogStore(home) as store:
        for i in range(n):
            feats = dict(base)
            for k, v in features.items():
                if v is ...:
                    feats.pop(k, None)
                else:
                    feats[k] = v
            store.append(DECISIONS, UC, dict(template, decision_id=f"{template['decision_id']}-x{day}-{i}",
                                             features=feats, scores=json.loads(template["scores"]), timestamp=ts + i))
    compact(home, UC)


@pytest.fixture(scope="module")
def clean_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    home = tmp_path_factory.mktemp("checks")
    run_simulation(home, UC, subjects=400, days=3, seed=3, start="2026-02-02")
    compact(home, UC)
    return home


def test_each_feature_is_checked_as_its_blueprint_declares_it(clean_home: Path, tmp_path: Path) -> None:
    import shutil

    bp = load_catalog(clean_home)[UC]
    logs = HomeLayout.of(clean_home).logs
    clean = {o.name: o for o in LogQuality(str(logs), bp).decision_checks()}
    for f in bp.features:
        assert clean[f"feature_{f.name}"].passed and clean[f"feature_{f.name}"].blocking, clean[f"feature_{f.name}"]

    home = tmp_path / "h"
    shutil.copytree(clean_home, home)
    template = read_decisions(home, UC).row(0, named=True)
    _append_like(home, template, 5, "2026-02-03", tenure_days=...)       # required, missing
    _append_like(home, template, 3, "2026-02-03", hour_of_day="noon")    # wrong type
    _append_like(home, template, 2, "2026-02-03", hour_of_day=31)        # outside [0, 23]
    _append_like(home, template, 4, "2026-02-03", platform="blackberry")  # not a category
    _append_like(home, template, 1, "2026-02-03", notifs_last_7d=2.5)     # an int that is not integral
    out = {o.name: o for o in LogQuality(str(HomeLayout.of(home).logs), bp).decision_checks()}
    assert not out["feature_tenure_days"].passed and out["feature_tenure_days"].details["missing"] == 5
    assert out["feature_hour_of_day"].details["type"] == 3 and out["feature_hour_of_day"].details["range"] == 2
    assert "violated: type, range" in out["feature_hour_of_day"].description
    assert not out["feature_platform"].passed and out["feature_platform"].details["category"] == 4
    assert out["feature_platform"].details["category_examples"] == ["blackberry"]
    assert not out["feature_notifs_last_7d"].passed and out["feature_notifs_last_7d"].details["type"] == 1
    # features declared with a default may be missing (default: null means missing on purpose)
    assert out["feature_notif_open_rate"].passed and out["feature_sessions_last_7d"].passed
    # the days of the run alone: 2026-02-02 is clean
    first_day = {o.name: o.passed for o in LogQuality(str(HomeLayout.of(home).logs), bp,
                                                      ("2026-02-02", "2026-02-02")).decision_checks()}
    assert all(first_day.values()), first_day


def test_a_tolerated_share_of_missing_values_comes_from_the_blueprint(clean_home: Path) -> None:
    bp = load_catalog(clean_home)[UC]
    tolerant = bp.model_copy(update={"data_checks": bp.data_checks.model_copy(update={"max_null_share": 0.5})})
    import shutil
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp) / "h"
        shutil.copytree(clean_home, home)
        _append_like(home, read_decisions(home, UC).row(0, named=True), 5, "2026-02-03", tenure_days=...)
        logs = str(HomeLayout.of(home).logs)
        strict = {o.name: o for o in LogQuality(logs, bp).decision_checks()}
        lax = {o.name: o for o in LogQuality(logs, tolerant).decision_checks()}
    assert not strict["feature_tenure_days"].passed
    assert lax["feature_tenure_days"].passed and lax["feature_tenure_days"].details["missing_share"] > 0


def test_a_required_feature_arriving_null_blocks_training(clean_home: Path, tmp_path: Path) -> None:
    import shutil

    from looper_pipelines.orchestration import Orchestrator

    home = tmp_path / "h"
    shutil.copytree(clean_home, home)
    template = read_decisions(home, UC).row(0, named=True)
    _append_like(home, template, 200, "2026-02-04", tenure_days=None)
    orch = Orchestrator(str(home))
    data = orch.materialize_data(UC, "2026-02-02", "2026-02-04")
    checks = _checks(data)
    assert checks["feature_tenure_days"] is False
    assert checks["feature_platform"] is True and checks["decisions_not_null"] is True
    assert f"{UC}/fct_training_examples" not in _materialized(data)
    models = orch.materialize_models(UC)
    assert not models.success
    failure = next(ev for ev in models.all_events if ev.event_type_value == "STEP_FAILURE")
    message = str(failure.event_specific_data.error.cause or failure.event_specific_data.error)
    assert "blocking data-quality checks failed" in message and "feature_tenure_days" in message
    layout = HomeLayout.of(home)
    assert ModelRegistry(layout.tracking_uri, layout.artifact_root).by_alias(UC, CHALLENGER) is None


def test_volume_drop_blocks_and_each_run_judges_its_own_days(clean_home: Path, tmp_path: Path) -> None:
    import shutil

    from looper_pipelines.orchestration import Orchestrator

    home = tmp_path / "h"
    shutil.copytree(clean_home, home)
    template = read_decisions(home, UC).row(0, named=True)
    _append_like(home, template, 3, "2026-02-05")  # a day with a handful of decisions
    layout = HomeLayout.of(home)
    orch = Orchestrator(str(home))

    low = orch.materialize_data(UC, "2026-02-05", "2026-02-05")
    assert _checks(low)["decisions_volume"] is False
    assert f"{UC}/stg_decisions" not in _materialized(low)
    assert any(r.startswith("decisions_volume (2026-02-05)") for r in failed_blocking_checks(layout, UC))

    # the earlier days are judged on their own, not failed by the low day after them
    good = orch.materialize_data(UC, "2026-02-02", "2026-02-04")
    assert good.success and all(_checks(good).values()), _checks(good)
    assert failed_blocking_checks(layout, UC) == []  # the low day is neither in the warehouse nor the latest run
    assert failed_blocking_checks(layout, UC, ["2026-02-04", "2026-02-05"]) == ["decisions_volume (2026-02-05)"]
    models = orch.materialize_models(UC)
    assert models.success
    assert ModelRegistry(layout.tracking_uri, layout.artifact_root).by_alias(UC, CHALLENGER) is not None
