"""Great Expectations data-quality checks on each use case's log assets, over the days of
the run that evaluates them; the record of each day's outcome gates training and promotion."""


from typing import Any

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetCheckSpec,
    AssetKey,
    multi_asset_check,
)

from looper_pipelines.blueprints import Blueprint
from looper_pipelines.defs.metadata import plain_dict
from looper_pipelines.defs.resources import LooperHome

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"

CHECK_DESCRIPTIONS = {
    "decisions_schema": "The decision log has every column of the record schema.",
    "decisions_not_null": "No decision lacks its id, time, action, propensity, features or blueprint version.",
    "decisions_ranges": "Propensities in (0, 1]; actions and action indexes among the blueprint's actions.",
    "decisions_unique_ids": "No decision id appears twice.",
    "decisions_volume": "No day's decisions drop below the blueprint's bound (data_checks.max_volume_drop) "
                        "against the days before it.",
    "observations_not_before_decision": "No observation is timestamped before its decision (leakage).",
    "observations_orphan_share": "Few observations name a decision that was never logged.",
    "label_delay": "Most observations arrive inside their label's window (informational).",
}


def run_days(context: AssetCheckExecutionContext) -> tuple[str, str] | None:
    """The first and last day of the partitions the run covers (None: not a partitioned run)."""
    tags = context.run.tags
    if RANGE_START in tags and RANGE_END in tags:
        return tags[RANGE_START], tags[RANGE_END]
    if PARTITION in tags:
        return tags[PARTITION], tags[PARTITION]
    return None


def build_log_checks(bp: Blueprint) -> Any:
    from looper_pipelines.quality.log_checks import check_names, feature_check_name

    use_case = bp.name
    dec_key = AssetKey([use_case, "decision_logs"])
    obs_key = AssetKey([use_case, "observation_logs"])
    features = {feature_check_name(f.name): f for f in bp.features}
    dec_checks, obs_checks = check_names(bp)

    max_null = bp.data_checks.max_null_share

    def describe(name: str) -> str:
        f = features.get(name)
        if f is None:
            return CHECK_DESCRIPTIONS[name]
        return (f"Feature {f.name} as its blueprint declares it: of type {f.type}"
                + ((", present in every decision" if max_null == 0 else f", missing in at most {max_null:.1%} of decisions")
                   if f.required else "")
                + (", one of its categories" if f.categories else "")
                + (", inside its range" if f.minimum is not None or f.maximum is not None else "") + ".")

    specs = [AssetCheckSpec(n, asset=dec_key, blocking=b, description=describe(n)) for n, b in dec_checks]
    specs += [AssetCheckSpec(n, asset=obs_key, blocking=b, description=describe(n)) for n, b in obs_checks]

    @multi_asset_check(specs=specs, name=f"{use_case}_log_quality")
    def _checks(context: AssetCheckExecutionContext, looper_home: LooperHome):  # type: ignore[no-untyped-def]
        from looper_pipelines.quality import LogQuality
        from looper_pipelines.quality.outcomes import day_range, logged_days, record_outcomes

        days = run_days(context)
        q = LogQuality(str(looper_home.layout.logs), looper_home.blueprint(use_case), days)
        outcomes = [(dec_key, o) for o in q.decision_checks()] + [(obs_key, o) for o in q.observation_checks()]
        results = {}
        for key, o in outcomes:
            results[o.name] = {"passed": o.passed, "blocking": o.blocking, "details": o.details}
            yield AssetCheckResult(
                asset_key=key,
                check_name=o.name,
                passed=o.passed,
                severity=AssetCheckSeverity.ERROR if o.blocking else AssetCheckSeverity.WARN,
                description=o.description if o.passed else f"FAILED: {o.description}",
                metadata=plain_dict({**o.details, "days": "all" if days is None else f"{days[0]}..{days[1]}"}),
            )
        layout = looper_home.layout
        covered = day_range(*days) if days is not None else logged_days(layout, use_case)
        record_outcomes(layout, use_case, covered, results, context.run.run_id)

    return _checks


def failed_blocking_checks(home: LooperHome, use_case: str) -> list[str]:
    from looper_pipelines.quality.outcomes import failed_blocking_checks as failed

    return failed(home.layout, use_case)
