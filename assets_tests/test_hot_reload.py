"""The decision path picks up a newly published champion atomically, under load."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import lightgbm as lgb
import numpy as np

from looper_pipelines.blueprints import load_catalog
from looper_pipelines.client import LooperClient
from looper_pipelines.home import HomeLayout
from looper_pipelines.serving.publish import activate, build_artifact

UC = "notification_send"
FEATURES = {"tenure_days": 30.0, "hour_of_day": 20, "notif_open_rate": 0.4, "platform": "ios"}


def _boosters(seed: int, n_features: int) -> dict[str, lgb.Booster]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2000, n_features))
    x[:, -1] = rng.integers(0, 2, 2000)  # the action column
    out = {}
    for label in ("click", "unsubscribe"):
        y = (rng.random(2000) < 1 / (1 + np.exp(-(x[:, 0] + x[:, -1] * x[:, 1])))).astype(float)
        out[label] = lgb.train({"objective": "binary", "verbosity": -1, "num_leaves": 7, "seed": seed},
                               lgb.Dataset(x, y), num_boost_round=10)
    return out


def _publish(home: Path, model_version: str, seed: int, threshold: float) -> str:
    bp = load_catalog(home)[UC]
    layout = HomeLayout.of(home)
    vid = f"m{model_version}-test"
    build_artifact(layout, UC, vid, _boosters(seed, len(bp.features) + 1), [*bp.feature_names, "action"], {
        "model_version": model_version, "policy_version": f"pol{model_version}",
        "policy_params": {"threshold": threshold}, "blueprint_version": bp.version, "lineage_version": bp.lineage_version,
    })
    activate(layout, UC, vid)
    return vid


def test_swap_under_load_loses_no_decision(home: Path) -> None:
    _publish(home, "1", seed=1, threshold=0.0)
    client = LooperClient.local(home, reload_interval_s=0.01, log_durability="disabled")
    assert client.deployment(UC).model_version == "1"
    errors: list[BaseException] = []
    seen: list[tuple[str | None, str]] = []
    stop = threading.Event()

    def worker() -> None:
        while not stop.is_set():
            try:
                d = client.get_decision(UC, "u", FEATURES)
                seen.append((d.model_version, d.policy_version))
                assert set(d.scores) == {"click", "unsubscribe"}
            except BaseException as e:
                errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    time.sleep(0.3)
    _publish(home, "2", seed=2, threshold=0.05)
    deadline = time.monotonic() + 20
    while client.deployment(UC).model_version != "2" and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    stop.set()
    for t in threads:
        t.join()
    client.close()
    assert not errors, errors[:3]
    # every decision names the deployment that made it: model and policy always travel together
    assert set(seen) <= {("1", "pol1"), ("2", "pol2")}
    assert ("1", "pol1") in seen and ("2", "pol2") in seen
    last_one = max(i for i, s in enumerate(seen) if s[0] == "1")
    first_two = min(i for i, s in enumerate(seen) if s[0] == "2")
    assert first_two <= last_one + 8  # threads overlap at the switch, but the switch happens once


def test_a_broken_artifact_keeps_the_current_deployment(home: Path) -> None:
    _publish(home, "1", seed=1, threshold=0.0)
    vid2 = _publish(home, "2", seed=2, threshold=0.0)
    layout = HomeLayout.of(home)
    with LooperClient.local(home, reload_interval_s=0.0, log_durability="disabled") as client:
        assert client.deployment(UC).model_version == "2"
        lib = next((layout.serving / UC / "versions" / vid2).rglob("*.so"))
        vid3 = _publish(home, "3", seed=3, threshold=0.0)
        lib3 = next((layout.serving / UC / "versions" / vid3).rglob("*.so"))
        data = bytearray(lib3.read_bytes())
        data[len(data) // 2] ^= 0xFF
        lib3.write_bytes(bytes(data))
        client.refresh()
        assert client.deployment(UC).model_version == "2"  # tampered library refused, old one keeps serving
        assert client.get_decision(UC, "u", FEATURES).model_version == "2"
        assert lib.exists()
