"""The real Open Bandit sample through the same graph: import, the Dagster CLI, evaluation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest

from assets_tests.conftest import OBD, REPO

UC = "open_bandit_women"
BIN = Path(sys.executable).parent


@pytest.mark.skipif(not (OBD / "women" / "bts.csv").exists(), reason="Open Bandit sample not present")
def test_random_policy_click_rate_estimated_from_thompson_logs(tmp_path: Path) -> None:
    from dagster import AssetKey

    home = tmp_path / "obd"
    env = {**os.environ, "LOOPER_HOME": str(home), "DAGSTER_HOME": str(home / "dagster"), "DO_NOT_TRACK": "1"}
    imp = subprocess.run(
        [str(BIN / "looper"), "logs", "import", "--home", str(home), "--use-case", UC,
         "--blueprint", str(REPO / "examples/obd/open_bandit_women.yaml"),
         "--mapping", str(REPO / "examples/obd/mapping.yaml"), str(OBD / "women" / "bts.csv")],
        capture_output=True, text=True, env=env,
    )
    assert imp.returncode == 0, imp.stderr
    (home / "dagster").mkdir(parents=True, exist_ok=True)
    (home / "dagster" / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    data_assets = ",".join(f"{UC}/{a}" for a in ("decision_logs", "observation_logs", "stg_decisions", "stg_observations",
                                                   "int_decision_labels", "fct_training_examples", "fct_experiment_outcomes"))
    cli = subprocess.run(
        [str(BIN / "dagster"), "asset", "materialize", "-m", "looper_pipelines.definitions", "--select", data_assets,
         "--partition-range", "2019-11-24...2019-11-30"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
    )
    assert cli.returncode == 0, cli.stderr[-3000:]

    from looper_pipelines.orchestration import Orchestrator

    orch = Orchestrator(str(home))
    models = orch.materialize_models(UC)
    assert models.success
    ev = orch.instance.get_latest_materialization_event(AssetKey([UC, "offline_evaluation"]))
    meta = ev.asset_materialization.metadata
    truth = pl.read_csv(OBD / "women" / "random.csv")["click"].mean()
    for est in ("ips", "snips"):
        v = meta[f"ope_uniform_random_{est}"].value
        assert v["n"] == 10_000
        assert v["ci_low"] <= truth <= v["ci_high"], (est, v, truth)
