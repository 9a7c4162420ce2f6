"""Imported randomised logs reach a served champion through the command line only:
``looper logs import`` → ``looper run`` → ``looper serve``; and ``looper run`` says why,
with exit code 3, when a gate keeps the challenger out."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import numpy as np
import yaml

from assets_tests.conftest import start_looper_serve, stop_process
from looper_pipelines.blueprints.loader import PACKAGED_CATALOG
from looper_pipelines.simulation import get_simulator

START = datetime(2026, 3, 2, tzinfo=UTC)
LOOPER = [sys.executable, "-m", "looper_pipelines.cli.main"]


def looper(*args: str, home: Path, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LOOPER_HOME": str(home), "DAGSTER_HOME": str(home / "dagster")}
    return subprocess.run([*LOOPER, *args, "--home", str(home)], capture_output=True, text=True, env=env,
                          timeout=timeout)


def write_randomised_logs(folder: Path, use_case: str, n: int, days: int, seed: int, signal: bool = True) -> tuple[Path, Path, Path]:
    """A CSV of ``n`` notification decisions over ``days`` days, actions uniformly at random
    (logged propensity 0.5), labels drawn from the simulator's truth, each reward with the
    time it was observed; and the blueprint (the packaged one renamed) and column mapping
    that import it. ``signal=False``: labels drawn whatever the action, and the actions dealt
    so that each has exactly the same share of clicks and of unsubscribes (no difference
    between the actions even by chance)."""
    sim = get_simulator("notification_send", seed=seed)
    bp = yaml.safe_load((PACKAGED_CATALOG / "notification_send.yaml").read_text())
    bp["name"] = use_case
    rng = np.random.default_rng(seed)
    names = [f.name for f in sim.blueprint.features]
    rows = []
    per_day = n // days
    for day in range(days):
        visits = sim.sample_visits(per_day, day=day, seed=seed * 100 + day)
        truth = sim.expected_outcomes(visits)
        action = rng.integers(0, 2, per_day)
        for i, feats in enumerate(visits.rows()):
            at = START + timedelta(days=day, seconds=int(rng.integers(0, 86_400)))
            a = int(action[i])
            row = {"decision": f"dec-{day}-{i}", "user": f"user-{day}-{i}", "time": at.isoformat(),
                   "action": sim.actions[a], "p": 0.5}
            row.update({k: feats.get(k, "") for k in names})
            for label, window in (("click", 24), ("unsubscribe", 72)):
                hit = rng.random() < truth[label][i, a if signal else 1]
                row[label] = int(hit)
                row[f"{label}_at"] = (at + timedelta(hours=float(rng.uniform(0.1, window * 0.9)))).isoformat() if hit else ""
            rows.append(row)
    if not signal:  # deal the actions alternately within each outcome
        order = sorted(range(len(rows)), key=lambda j: (rows[j]["click"], rows[j]["unsubscribe"], rng.random()))
        for k, j in enumerate(order):
            rows[j]["action"] = sim.actions[k % 2]
    data = folder / f"{use_case}.csv"
    with data.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    blueprint = folder / f"{use_case}.yaml"
    blueprint.write_text(yaml.safe_dump(bp, sort_keys=False))
    mapping = folder / f"{use_case}.mapping.yaml"
    mapping.write_text(yaml.safe_dump({
        "timestamp": "time", "decision_id": "decision", "subject_id": "user", "action": "action",
        "action_values": "name", "propensity": "p", "features": {k: k for k in names},
        "rewards": {"click": "click", "unsubscribe": "unsubscribe"},
        "reward_timestamps": {"click": "click_at", "unsubscribe": "unsubscribe_at"},
    }))
    return data, blueprint, mapping


def test_import_run_and_serve_through_the_command_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    uc = "imported_notifications"
    data, blueprint, mapping = write_randomised_logs(tmp_path, uc, n=8400, days=14, seed=0)
    imp = looper("logs", "import", "--use-case", uc, "--blueprint", str(blueprint), "--mapping", str(mapping),
                 str(data), home=home)
    assert imp.returncode == 0, imp.stderr
    run = looper("run", "--use-case", uc, home=home)
    assert run.returncode == 0, run.stdout + run.stderr
    out = run.stdout
    assert "data job over 2026-03-02..2026-03-15 (14 days with decisions)" in out, out
    assert "PROMOTED" in out and "PASS lift:" in out and "policy:" in out, out
    status = json.loads(looper("status", "--json", home=home).stdout)["use_cases"][uc]
    champion = status["champion"]["version"]
    assert status["last_promotion"]["action"] == "promote" and status["serving_version"].startswith(f"m{champion}-")

    proc, url = start_looper_serve(home, env={**os.environ, "LOOPER_HOME": str(home)})
    try:
        features = {"tenure_days": 40.0, "hour_of_day": 19, "notif_open_rate": 0.4, "days_since_last_visit": 5.0}
        r = httpx.post(f"{url}/v1/decisions", json={"use_case": uc, "subject_id": "u1", "features": features})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["model_version"] == champion and set(body["scores"]) == {"click", "unsubscribe"}
    finally:
        stop_process(proc)


def test_run_exits_3_and_says_why_when_a_gate_keeps_the_challenger_out(tmp_path: Path) -> None:
    home = tmp_path / "home"
    uc = "no_signal"
    data, blueprint, mapping = write_randomised_logs(tmp_path, uc, n=3000, days=6, seed=1, signal=False)
    assert looper("logs", "import", "--use-case", uc, "--blueprint", str(blueprint), "--mapping", str(mapping),
                  str(data), home=home).returncode == 0
    run = looper("run", "--use-case", uc, home=home)
    assert run.returncode == 3, run.stdout + run.stderr
    assert "NOT PROMOTED" in run.stdout and "FAIL lift:" in run.stdout, run.stdout
    assert "serving the default action (no champion)" in run.stdout
    status = looper("status", home=home)
    assert "last gate decision: reject" in status.stdout and "FAIL lift:" in status.stdout


def test_run_errors_are_one_line(tmp_path: Path) -> None:
    home = tmp_path / "home"
    for args, fragment in [
        (("run", "--use-case", "nope"), "--use-case: no blueprint named 'nope'"),
        (("run", "--use-case", "notification_send"), "no decisions logged for use case 'notification_send'"),
        (("run", "--use-case", "notification_send", "--from", "yesterday"), "no decisions logged"),
    ]:
        r = looper(*args, home=home)
        assert r.returncode == 2, r.stderr
        lines = r.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("looper: error: ") and fragment in lines[0], r.stderr
