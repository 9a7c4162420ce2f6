"""``looper status``: per use case, champion and challenger, last runs, checks, tracking."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from looper_pipelines.blueprints import scan_catalog
from looper_pipelines.home import HomeLayout


def collect(home: str | None) -> dict[str, Any]:
    from looper_pipelines.quality.outcomes import latest_outcomes
    from looper_pipelines.registry import CHALLENGER, CHAMPION, ModelRegistry
    from looper_pipelines.serving.runtime import current_version

    layout = HomeLayout.of(home)
    uri = os.environ.get("MLFLOW_TRACKING_URI", layout.tracking_uri)
    registry = ModelRegistry(uri, layout.artifact_root) if (layout.mlflow / "mlflow.db").exists() or "MLFLOW_TRACKING_URI" in os.environ else None
    instance = None
    if (layout.dagster_home / "dagster.yaml").exists():
        from looper_pipelines.orchestration import instance_for

        instance = instance_for(layout)
    catalog = scan_catalog(layout.root)
    out: dict[str, Any] = {"home": str(layout.root), "tracking_uri": uri, "use_cases": {},
                           "broken_blueprints": {name: str(e) for name, e in sorted(catalog.broken.items())}}
    for name, bp in sorted(catalog.blueprints.items()):
        entry: dict[str, Any] = {"blueprint_version": bp.version}
        for alias in (CHAMPION, CHALLENGER):
            v = registry.by_alias(name, alias) if registry else None
            entry[alias] = None if v is None else {"version": v.version, "policy_version": v.tags.get("policy_version"),
                                                   "run_id": v.run_id}
        entry["serving_version"] = current_version(layout, name)
        serving, served_model = _serving(layout, bp)
        entry["serving"] = {**serving.to_dict(), "model_version": served_model}
        entry["problems"] = _problems(entry, registry is not None)
        entry["checks"] = {k: ("passed" if ok else "FAILED") for k, ok in latest_outcomes(layout, name).items()}
        entry["last_materialization"] = _last_materialization(instance, name)
        entry["last_promotion"] = _last_promotion(layout, name)
        out["use_cases"][name] = entry
    return out


def _serving(layout: HomeLayout, bp: Any) -> tuple[Any, str | None]:
    """What a decision process starting now would serve (every file of the published
    version checked against its SHA-256, as a process does when it loads it) and that
    version's model version (None: the default action)."""
    from looper_pipelines.serving.manifest import ArtifactError
    from looper_pipelines.serving.runtime import (
        ServingStatus,
        describe_failure,
        newest_verified,
        read_current,
        refused,
        verify_version,
    )

    published: str | None = None
    try:
        doc = read_current(layout, bp.name)
        if doc is None:
            return ServingStatus(), None
        published = str(doc["version"])
        meta = verify_version(layout, bp, published)
        return ServingStatus("ok", published, published), str(meta["model_version"])
    except (ArtifactError, OSError) as e:
        problem = describe_failure(e)
    found = newest_verified(layout, bp.name, lambda v: verify_version(layout, bp, v), exclude=published)
    status = refused(published, problem, None, found[0] if found else None)
    return status, (str(found[1]["model_version"]) if found else None)


def _problems(entry: dict[str, Any], with_registry: bool) -> list[str]:
    """Disagreements between the registry's champion and what is served, and a degraded
    serving state."""
    out = []
    serving = entry["serving"]
    if serving["status"] == "degraded":
        out.append(f"serving degraded: {serving['reason']}")
    champion = entry["champion"]["version"] if entry["champion"] else None
    served = serving["model_version"]
    if with_registry and champion != served:
        what = f"model version {served} ({serving['serving_version']})" if served else "the default action"
        out.append(f"champion mismatch: the registry's champion is {f'version {champion}' if champion else 'unset'}, "
                   f"but {what} is served")
    return out


def _last_promotion(layout: HomeLayout, use_case: str) -> dict[str, Any] | None:
    """The newest gate decision (or manual override, rollback) with its reasons."""
    from datetime import UTC, datetime

    from looper_pipelines.promotion.history import PromotionHistory

    entries = PromotionHistory(layout.state, use_case).entries()
    if not entries:
        return None
    e = entries[-1]
    return {"action": e.get("action"), "challenger": e.get("challenger"), "champion": e.get("champion"),
            "at": datetime.fromtimestamp(float(e.get("time", 0)), UTC).isoformat(timespec="seconds"),
            "reasons": list(e.get("reasons", []))}


def _last_materialization(instance: Any, use_case: str) -> dict[str, str] | None:
    if instance is None:
        return None
    from dagster import AssetKey

    best = None
    for asset in ("decision_logs", "trained_model", "published_deployment"):
        ev = instance.get_latest_materialization_event(AssetKey([use_case, asset]))
        if ev is not None and (best is None or ev.timestamp > best[1]):
            best = (asset, ev.timestamp)
    if best is None:
        return None
    from datetime import UTC, datetime

    return {"asset": best[0], "at": datetime.fromtimestamp(best[1], UTC).isoformat(timespec="seconds")}


def run(args: argparse.Namespace) -> int:
    doc = collect(args.home)
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    print(f"home: {doc['home']}\ntracking: {doc['tracking_uri']}")
    for name, e in doc["use_cases"].items():
        champ = e["champion"]["version"] if e["champion"] else "-"
        chall = e["challenger"]["version"] if e["challenger"] else "-"
        last = e["last_materialization"]
        failed = [k for k, v in e["checks"].items() if v != "passed"]
        print(f"{name}: champion {champ}, challenger {chall}, serving {e['serving_version'] or '-'}, "
              f"last {last['asset'] + ' at ' + last['at'] if last else '-'}, "
              f"checks {'all passed' if e['checks'] and not failed else ('failed: ' + ', '.join(failed) if failed else '-')}")
        for problem in e["problems"]:
            print(f"  WARNING {problem}")
        prom = e["last_promotion"]
        if prom is not None:
            who = prom["challenger"] or prom["champion"]
            print(f"  last gate decision: {prom['action']} version {who} at {prom['at']}")
            for reason in prom["reasons"]:
                if not str(reason).startswith("PASS"):
                    print(f"    {reason}")
    for name, problem in doc["broken_blueprints"].items():
        print(f"{name}: BROKEN BLUEPRINT, not loaded: {problem}")
    return 0
