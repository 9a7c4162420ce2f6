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
from looper_pipelines.orchestration import PARTITION, RANGE_END, RANGE_START


def run_days(context: AssetCheckExecutionContext) -> tuple[str, str] | None:
    """The first and last day of the partitions the run covers (None: not a partitioned run)."""
    tags = context.run.tags
    if RANGE_START in tags and RANGE_END in tags:
        return tags[RANGE_START], tags[RANGE_END]
    if PARTITION in tags:
        return tags[PARTITION], tags[PARTITION]
    return None


def build_log_checks(bp: Blueprint) -> Any:
    from looper_pipelines.quality.log_checks import check_specs

    use_case = bp.name
    dec_key = AssetKey([use_case, "decision_logs"])
    obs_key = AssetKey([use_case, "observation_logs"])
    dec_checks, obs_checks = check_specs(bp)
    specs = [AssetCheckSpec(n, asset=dec_key, blocking=b, description=d) for n, b, d in dec_checks]
    specs += [AssetCheckSpec(n, asset=obs_key, blocking=b, description=d) for n, b, d in obs_checks]

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

