"""Great Expectations data-quality checks on each use case's log assets."""


import time
from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    multi_asset_check,
)

from looper_pipelines.defs.metadata import plain_dict
from looper_pipelines.defs.resources import LooperHome

DECISION_CHECKS = [
    ("decisions_schema", True), ("decisions_not_null", True), ("decisions_ranges", True),
    ("decisions_unique_ids", True), ("decisions_volume", False),
]
OBSERVATION_CHECKS = [
    ("observations_not_before_decision", True), ("observations_orphan_share", True), ("label_delay", False),
]


def checks_state_name(use_case: str) -> str:
    return f"checks/{use_case}.json"


def build_log_checks(use_case: str) -> Any:
    dec_key = AssetKey([use_case, "decision_logs"])
    obs_key = AssetKey([use_case, "observation_logs"])
    specs = [AssetCheckSpec(n, asset=dec_key, blocking=b) for n, b in DECISION_CHECKS]
    specs += [AssetCheckSpec(n, asset=obs_key, blocking=b) for n, b in OBSERVATION_CHECKS]

    @multi_asset_check(specs=specs, name=f"{use_case}_log_quality")
    def _checks(context: AssetCheckExecutionContext, looper_home: LooperHome):  # type: ignore[no-untyped-def]
        from looper_pipelines.quality import LogQuality

        q = LogQuality(str(looper_home.layout.logs), looper_home.blueprint(use_case))
        outcomes = [(dec_key, o) for o in q.decision_checks()] + [(obs_key, o) for o in q.observation_checks()]
        state = {}
        for key, o in outcomes:
            state[o.name] = {"passed": o.passed, "blocking": o.blocking, "details": o.details, "time": time.time()}
            yield AssetCheckResult(
                asset_key=key,
                check_name=o.name,
                passed=o.passed,
                severity=AssetCheckSeverity.ERROR if o.blocking else AssetCheckSeverity.WARN,
                description=o.description if o.passed else f"FAILED: {o.description}",
                metadata=plain_dict(o.details),
            )
        looper_home.write_state(checks_state_name(use_case), state)

    return _checks


def failed_blocking_checks(home: LooperHome, use_case: str) -> list[str]:
    state = home.read_state(checks_state_name(use_case))
    if not state:
        return ["no data-quality checks have run"]
    return [name for name, s in state.items() if s["blocking"] and not s["passed"]]
