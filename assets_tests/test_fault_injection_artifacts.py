"""Corrupt published artifacts, met by decision processes and by the commands that move the
champion.

One module-scoped home is made through the command line (``looper logs import`` →
``looper run`` promotes and publishes model version 1; a second model trained on the same
examples is registered and ``looper promote`` publishes it as version 2); every test works
on its own copy. Artifacts are corrupted the ways files go bad: a truncated or bit-flipped
compiled library, a library deleted, the version folder deleted while ``current.json``
still names it, a missing ``deployment.json``.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from mlflow.tracking import MlflowClient

from assets_tests.conftest import start_looper_serve, stop_process
from assets_tests.test_http_service import parse_prometheus, serve
from assets_tests.test_run_command import looper, write_randomised_logs
from looper_pipelines.client import LooperClient
from looper_pipelines.home import HomeLayout
from looper_pipelines.registry import CHAMPION, registered_model_name
from looper_pipelines.serving.http import create_app
from looper_pipelines.serving.publish import activate
from looper_pipelines.serving.runtime import CURRENT

UC = "guarded_notifications"
FEATURES = {"tenure_days": 40.0, "hour_of_day": 19, "notif_open_rate": 0.4, "days_since_last_visit": 5.0}
RUNTIME_LOG = "looper_pipelines.serving.runtime"


@dataclass(frozen=True)
class Promoted:
    home: Path
    first: str  # serving version of model version 1
    second: str  # serving version of model version 2 (published, the champion)


@pytest.fixture(scope="module")
def promoted(tmp_path_factory: pytest.TempPathFactory) -> Promoted:
    from looper_pipelines.blueprints import load_catalog
    from looper_pipelines.evaluation.holdout import all_examples
    from looper_pipelines.registry import ModelRegistry
    from looper_pipelines.training import train_models
    from looper_pipelines.training.registration import register_challenger

    root = tmp_path_factory.mktemp("faults")
    home = root / "home"
    data, blueprint, mapping = write_randomised_logs(root, UC, n=4200, days=7, seed=0)
    imp = looper("logs", "import", "--use-case", UC, "--blueprint", str(blueprint), "--mapping", str(mapping),
                 str(data), home=home)
    assert imp.returncode == 0, imp.stderr
    run = looper("run", "--use-case", UC, home=home)
    assert run.returncode == 0 and "PROMOTED" in run.stdout, run.stdout + run.stderr
    first = _current(home)
    layout = HomeLayout.of(home)
    bp = load_catalog(home)[UC]
    registry = ModelRegistry(layout.tracking_uri, layout.artifact_root)
    examples = all_examples(bp, layout.warehouse)
    second = register_challenger(registry, bp, examples, train_models(bp, examples, seed=1))
    assert second.version == "2"
    prom = looper("promote", "--use-case", UC, "--reason", "a second published version", home=home)
    assert prom.returncode == 0, prom.stdout + prom.stderr
    assert first.startswith("m1-") and _current(home).startswith("m2-")
    return Promoted(home, first, _current(home))


@pytest.fixture
def copy(promoted: Promoted, tmp_path: Path) -> Path:
    """A private copy of the promoted home (its registry included)."""
    dest = tmp_path / "home"
    shutil.copytree(promoted.home, dest, ignore=shutil.ignore_patterns("dagster"))
    return dest


# -- corrupting an artifact ----------------------------------------------------------------
def _version(home: Path, vid: str) -> Path:
    return HomeLayout.of(home).serving / UC / "versions" / vid


def _library(home: Path, vid: str) -> Path:
    return sorted(_version(home, vid).rglob("*.so"))[0]


def _truncate(home: Path, vid: str) -> None:
    lib = _library(home, vid)
    lib.write_bytes(lib.read_bytes()[: lib.stat().st_size // 2])


def _flip(home: Path, vid: str) -> None:
    lib = _library(home, vid)
    data = bytearray(lib.read_bytes())
    for at in (len(data) // 3, len(data) // 2):
        data[at] ^= 0xFF
    lib.write_bytes(bytes(data))


def _delete_library(home: Path, vid: str) -> None:
    _library(home, vid).unlink()


def _delete_version(home: Path, vid: str) -> None:
    shutil.rmtree(_version(home, vid))


def _delete_deployment(home: Path, vid: str) -> None:
    (_version(home, vid) / "deployment.json").unlink()


# kind -> (how, a fragment of the reason given for refusing it)
CORRUPTIONS: dict[str, tuple[Callable[[Path, str], None], str]] = {
    "truncated_library": (_truncate, "SHA-256"),
    "flipped_bytes": (_flip, "SHA-256"),
    "missing_library": (_delete_library, "is missing"),
    "missing_version": (_delete_version, "does not exist"),
    "missing_deployment": (_delete_deployment, "deployment.json is missing"),
}
LIBRARY_CORRUPTIONS = ["truncated_library", "flipped_bytes", "missing_library"]


def corrupt(home: Path, vid: str, kind: str) -> str:
    how, fragment = CORRUPTIONS[kind]
    how(home, vid)
    return fragment


def _current(home: Path) -> str:
    return str(json.loads((HomeLayout.of(home).serving / UC / CURRENT).read_text())["version"])


def _refusals(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == RUNTIME_LOG and r.levelno >= logging.ERROR]


# -- a decision process in this interpreter ------------------------------------------------
@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_a_running_process_keeps_its_model_and_reports_the_rejected_version(
    kind: str, promoted: Promoted, copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    layout = HomeLayout.of(copy)
    activate(layout, UC, promoted.first)
    with LooperClient.local(copy, reload_interval_s=3600, log_durability="disabled") as client:
        assert client.deployment(UC).model_version == "1" and not client.serving_status(UC).degraded
        activate(layout, UC, promoted.second)  # published, then its files go bad
        fragment = corrupt(copy, promoted.second, kind)
        caplog.set_level(logging.ERROR, logger=RUNTIME_LOG)
        client.refresh()
        d = client.get_decision(UC, "u1", FEATURES)
        assert d.model_version == "1" and set(d.scores) == {"click", "unsubscribe"}
        status = client.serving_status(UC)
        assert status.state == "kept" and status.degraded and not status.no_verified_version
        assert status.rejected_version == promoted.second and status.serving_version == promoted.first
        assert status.reason is not None and fragment in status.reason
        (line,) = _refusals(caplog)
        assert promoted.second in line and fragment in line and "\n" not in line


@pytest.mark.parametrize("kind", sorted(CORRUPTIONS))
def test_a_fresh_process_falls_back_to_the_newest_verified_version(
    kind: str, promoted: Promoted, copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    fragment = corrupt(copy, promoted.second, kind)
    caplog.set_level(logging.ERROR, logger=RUNTIME_LOG)
    with LooperClient.local(copy, log_durability="disabled") as client:
        d = client.get_decision(UC, "u1", FEATURES)
        assert d.model_version == "1" and set(d.scores) == {"click", "unsubscribe"}
        status = client.serving_status(UC)
        assert status.state == "fallback" and status.degraded and not status.no_verified_version
        assert (status.rejected_version, status.serving_version) == (promoted.second, promoted.first)
        assert status.reason is not None and fragment in status.reason
    (line,) = _refusals(caplog)
    assert promoted.second in line and promoted.first in line and fragment in line and "\n" not in line


def test_a_fresh_process_with_no_verified_version_serves_the_default_and_says_so(
    promoted: Promoted, copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    corrupt(copy, promoted.second, "truncated_library")
    corrupt(copy, promoted.first, "flipped_bytes")
    caplog.set_level(logging.ERROR, logger=RUNTIME_LOG)
    with LooperClient.local(copy, log_durability="disabled") as client:
        d = client.get_decision(UC, "u1", FEATURES)
        assert d.model_version is None and d.scores == {}
        status = client.serving_status(UC)
        assert status.state == "default" and status.degraded and status.no_verified_version
        assert status.rejected_version == promoted.second and status.serving_version is None
        assert status.reason is not None and "no published version verifies" in status.reason
    (line,) = _refusals(caplog)
    assert promoted.second in line and "no published version verifies" in line


def test_an_unreadable_current_json_falls_back_to_the_last_published_version(
    promoted: Promoted, copy: Path, caplog: pytest.LogCaptureFixture
) -> None:
    current = HomeLayout.of(copy).serving / UC / CURRENT
    current.write_bytes(current.read_bytes()[:7])  # a torn write
    caplog.set_level(logging.ERROR, logger=RUNTIME_LOG)
    with LooperClient.local(copy, log_durability="disabled") as client:
        assert client.get_decision(UC, "u1", FEATURES).model_version == "2"
        status = client.serving_status(UC)
        assert status.state == "fallback" and status.serving_version == promoted.second
        assert status.reason is not None and "not a valid publication record" in status.reason
    (line,) = _refusals(caplog)
    assert "current.json" in line and promoted.second in line


def test_an_intact_home_serves_the_published_version_and_is_healthy(promoted: Promoted, copy: Path) -> None:
    with LooperClient.local(copy, log_durability="disabled") as client:
        assert client.get_decision(UC, "u1", FEATURES).model_version == "2"
        status = client.serving_status(UC)
        assert status.state == "ok" and status.serving_version == promoted.second and status.reason is None


# -- the HTTP service ------------------------------------------------------------------------
def _flags(base: str) -> tuple[float, float]:
    samples = parse_prometheus(httpx.get(f"{base}/metrics").text)

    def flag(name: str) -> float:
        (value,) = [v for labels, v in samples[name] if labels["use_case"] == UC]
        return value

    return flag("looper_deployment_degraded"), flag("looper_deployment_no_verified_version")


def _decide(base: str) -> dict[str, object]:
    r = httpx.post(f"{base}/v1/decisions", json={"use_case": UC, "subject_id": "u1", "features": FEATURES})
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_http_a_fresh_server_falls_back_and_reports_degraded(promoted: Promoted, copy: Path) -> None:
    corrupt(copy, promoted.second, "flipped_bytes")
    with serve(create_app(home=copy, log_durability="disabled")) as base:
        health = httpx.get(f"{base}/healthz")
        assert health.status_code == 200
        body = health.json()
        assert body["status"] == "degraded"
        uc = body["use_cases"][UC]
        assert (uc["status"], uc["state"], uc["model_version"]) == ("degraded", "fallback", "1")
        assert uc["rejected_version"] == promoted.second and uc["serving_version"] == promoted.first
        assert "SHA-256" in uc["reason"] and body["use_cases"]["notification_send"]["status"] == "ok"
        assert _decide(base)["model_version"] == "1"
        assert _flags(base) == (1.0, 0.0)


def test_http_no_verified_version_serves_the_default_and_metrics_say_so(promoted: Promoted, copy: Path) -> None:
    corrupt(copy, promoted.second, "missing_version")
    corrupt(copy, promoted.first, "truncated_library")
    with serve(create_app(home=copy, log_durability="disabled")) as base:
        body = httpx.get(f"{base}/healthz").json()
        uc = body["use_cases"][UC]
        assert body["status"] == "degraded" and uc["state"] == "default" and uc["model_version"] is None
        assert "no published version verifies" in uc["reason"] and "does not exist" in uc["reason"]
        assert _decide(base)["model_version"] is None
        assert _flags(base) == (1.0, 1.0)


def test_http_a_running_server_keeps_its_model_when_a_corrupt_version_is_published(
    promoted: Promoted, copy: Path
) -> None:
    with serve(create_app(home=copy, log_durability="disabled", refresh_interval_s=0.05)) as base:
        assert httpx.get(f"{base}/healthz").json()["status"] == "ok"
        assert _flags(base) == (0.0, 0.0)
        corrupt(copy, promoted.first, "truncated_library")
        activate(HomeLayout.of(copy), UC, promoted.first)  # the corrupt version is published
        deadline = time.monotonic() + 20
        while (body := httpx.get(f"{base}/healthz").json())["status"] == "ok":
            assert time.monotonic() < deadline, "the server never looked at the new publication"
            time.sleep(0.05)
        uc = body["use_cases"][UC]
        assert (uc["state"], uc["model_version"], uc["rejected_version"]) == ("kept", "2", promoted.first)
        assert uc["published_version"] == promoted.first and uc["serving_version"] == promoted.second
        assert _decide(base)["model_version"] == "2"
        assert _flags(base) == (1.0, 0.0)


def test_looper_serve_logs_one_line_and_falls_back(promoted: Promoted, copy: Path) -> None:
    corrupt(copy, promoted.second, "missing_library")
    proc, base = start_looper_serve(copy)
    try:
        assert httpx.get(f"{base}/healthz").json()["use_cases"][UC]["state"] == "fallback"
        assert _decide(base)["model_version"] == "1"
    finally:
        out = stop_process(proc)
    refusals = [line for line in out.splitlines() if promoted.second in line]
    assert len(refusals) == 1, out
    assert "does not verify" in refusals[0] and "is missing" in refusals[0] and promoted.first in refusals[0]
    assert "Traceback" not in out


# -- moving the champion by hand -----------------------------------------------------------
def _champion(home: Path) -> str | None:
    client = MlflowClient(tracking_uri=HomeLayout.of(home).tracking_uri)
    try:
        return str(client.get_model_version_by_alias(registered_model_name(UC), CHAMPION).version)
    except Exception:
        return None


def _history(home: Path) -> list[str]:
    path = HomeLayout.of(home).state / "promotions" / f"{UC}.jsonl"
    return path.read_text().splitlines() if path.exists() else []


def _assert_refused(r: subprocess.CompletedProcess[str], vid: str, fragment: str) -> None:
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("looper: error: "), r.stderr
    assert vid in lines[0] and "does not verify" in lines[0] and fragment in lines[0], lines[0]
    assert len(lines[0]) < 1200 and "Traceback" not in r.stderr


@pytest.mark.parametrize("kind", LIBRARY_CORRUPTIONS)
def test_rollback_to_a_corrupt_artifact_changes_nothing(kind: str, promoted: Promoted, copy: Path) -> None:
    fragment = corrupt(copy, promoted.first, kind)
    history = _history(copy)
    r = looper("rollback", "--use-case", UC, home=copy)
    _assert_refused(r, promoted.first, fragment)
    assert _champion(copy) == "2" and _current(copy) == promoted.second and _history(copy) == history


def test_promote_to_a_corrupt_artifact_changes_nothing(promoted: Promoted, copy: Path) -> None:
    fragment = corrupt(copy, promoted.first, "flipped_bytes")
    history = _history(copy)
    r = looper("promote", "--use-case", UC, "--version", "1", "--reason", "back to one", home=copy)
    _assert_refused(r, promoted.first, fragment)
    assert _champion(copy) == "2" and _current(copy) == promoted.second and _history(copy) == history


def test_rollback_to_an_intact_artifact_moves_champion_and_serving_together(promoted: Promoted, copy: Path) -> None:
    r = looper("rollback", "--use-case", UC, home=copy)
    assert r.returncode == 0, r.stderr
    assert f"serving {promoted.first}" in r.stdout
    assert _champion(copy) == "1" and _current(copy) == promoted.first


def test_rollback_rebuilds_a_deleted_artifact_from_the_registry(promoted: Promoted, copy: Path) -> None:
    corrupt(copy, promoted.first, "missing_version")
    r = looper("rollback", "--use-case", UC, home=copy)
    assert r.returncode == 0, r.stderr
    assert _champion(copy) == "1" and _current(copy) == promoted.first
    with LooperClient.local(copy, log_durability="disabled") as client:
        assert client.get_decision(UC, "u1", FEATURES).model_version == "1"
        assert not client.serving_status(UC).degraded


# -- looper status -------------------------------------------------------------------------
def _status(home: Path, text: bool = True) -> tuple[dict[str, object], str]:
    """``looper status --json``'s entry of the use case and (``text``) ``looper status``."""
    doc = looper("status", "--json", home=home)
    assert doc.returncode == 0, doc.stderr
    if not text:
        return json.loads(doc.stdout)["use_cases"][UC], ""
    out = looper("status", home=home)
    assert out.returncode == 0, out.stderr
    return json.loads(doc.stdout)["use_cases"][UC], out.stdout


def test_status_agrees_when_champion_and_serving_agree(promoted: Promoted, copy: Path) -> None:
    entry, text = _status(copy)
    assert entry["problems"] == [] and "WARNING" not in text
    assert entry["serving"] == {"status": "ok", "state": "ok", "published_version": promoted.second,  # type: ignore[comparison-overlap]
                                "serving_version": promoted.second, "rejected_version": None, "reason": None,
                                "model_version": "2"}


def test_status_flags_a_champion_moved_in_the_registry(promoted: Promoted, copy: Path) -> None:
    MlflowClient(tracking_uri=HomeLayout.of(copy).tracking_uri).set_registered_model_alias(
        registered_model_name(UC), CHAMPION, "1")  # as the MLflow UI does
    entry, text = _status(copy)
    problems = entry["problems"]
    assert isinstance(problems, list) and len(problems) == 1, problems
    assert "champion is version 1" in problems[0] and f"model version 2 ({promoted.second})" in problems[0]
    assert f"WARNING {problems[0]}" in text


def test_status_flags_a_fallback_and_no_verified_version(promoted: Promoted, copy: Path) -> None:
    corrupt(copy, promoted.second, "flipped_bytes")
    entry, text = _status(copy)
    serving = entry["serving"]
    assert isinstance(serving, dict)
    assert (serving["state"], serving["serving_version"], serving["model_version"]) == ("fallback", promoted.first, "1")
    assert any(p.startswith("serving degraded") and promoted.second in p for p in entry["problems"])  # type: ignore[attr-defined]
    assert any(p.startswith("champion mismatch") for p in entry["problems"])  # type: ignore[attr-defined]
    assert "WARNING serving degraded" in text
    corrupt(copy, promoted.first, "missing_library")
    entry, _ = _status(copy, text=False)
    serving = entry["serving"]
    assert isinstance(serving, dict)
    assert serving["state"] == "default" and serving["model_version"] is None
    problems = " | ".join(entry["problems"])  # type: ignore[arg-type]
    assert "no published version verifies" in problems and "the default action is served" in problems
