"""From logs to a published champion in one call: the data job over a range of days, then
the model job, with every promotion gate's verdict. What ``looper run`` runs."""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from looper_pipelines.home import HomeLayout

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class RunError(RuntimeError):
    """The run could not be made (bad range, no logs) or a job failed; one line each."""


@dataclass
class RunOutcome:
    use_case: str
    first_day: str
    last_day: str
    days_with_decisions: int
    challenger: str | None = None
    promoted: bool = False
    champion: str | None = None
    serving_version: str | None = None
    reasons: list[str] = field(default_factory=list)
    tuning: str | None = None
    checks: dict[str, bool] = field(default_factory=dict)

    @property
    def gate_failed(self) -> bool:
        return not self.promoted and any(r.startswith("FAIL") for r in self.reasons)


def logged_days(layout: HomeLayout, use_case: str) -> list[str]:
    """Days with compacted decisions of ``use_case`` (after compacting what is sealed)."""
    from looper_pipelines.logs import compact, recover
    from looper_pipelines.logs.readers import compacted_days

    recover(layout.root)
    compact(layout.root, use_case)
    return compacted_days(layout.logs, "decisions", use_case)


def _day(name: str, value: str) -> str:
    if not DAY.match(value):
        raise RunError(f"{name}: expected a day as YYYY-MM-DD, got {value[:40]!r}")
    try:
        date.fromisoformat(value)
    except ValueError:
        raise RunError(f"{name}: {value!r} is not a calendar day") from None
    return value


def run_use_case(home: str | os.PathLike[str] | None, use_case: str, first_day: str | None = None,
                 last_day: str | None = None) -> RunOutcome:
    """Run ``use_case``'s data job over ``first_day..last_day`` (default: every day with
    logged decisions) and then its model job; report the checks, the tuning decision and
    the promotion gates."""
    from looper_pipelines.blueprints import scan_catalog
    from looper_pipelines.defs.partitions import PARTITIONS_START
    from looper_pipelines.orchestration import Orchestrator, failure_summary
    from looper_pipelines.promotion.history import PromotionHistory
    from looper_pipelines.serving.runtime import current_version

    layout = HomeLayout.of(home)
    scanned = scan_catalog(layout.root)
    catalog = scanned.blueprints
    if use_case not in catalog:
        raise RunError(f"--use-case: {scanned.why_missing(use_case)}")
    days = logged_days(layout, use_case)
    if not days:
        raise RunError(f"no decisions logged for use case {use_case!r} under {layout.root}: log or import some first")
    first = _day("--from", first_day) if first_day else days[0]
    last = _day("--to", last_day) if last_day else days[-1]
    if first > last:
        raise RunError(f"--from {first} is after --to {last}")
    if first < PARTITIONS_START:
        raise RunError(f"--from {first} is before the first daily partition ({PARTITIONS_START}); "
                       "set LOOPER_PARTITIONS_START to an earlier day")
    inside = [d for d in days if first <= d <= last]
    if not inside:
        raise RunError(f"no decisions of {use_case!r} between {first} and {last} (logged days: {days[0]}..{days[-1]})")
    out = RunOutcome(use_case, first, last, len(inside))
    orch = Orchestrator(str(layout.root))
    started = time.time()
    data = orch.materialize_data(use_case, first, last)
    out.checks = _checks(data)
    if not data.success:
        raise RunError(f"data job of {use_case} over {first}..{last} failed: {_one_line(failure_summary(data))}")
    models = orch.materialize_models(use_case)
    if not models.success:
        raise RunError(f"model job of {use_case} failed: {_one_line(failure_summary(models))}")
    entries = [e for e in PromotionHistory(layout.state, use_case).entries() if e.get("time", 0) >= started]
    decision = next((e for e in reversed(entries) if e.get("action") in ("promote", "reject")), None)
    if decision is not None:
        out.challenger = decision.get("challenger")
        out.promoted = decision.get("action") == "promote"
        out.champion = decision.get("champion")
        out.reasons = list(decision.get("reasons", []))
    out.tuning = _metadata(models, "tuned_policy", "decision")
    out.serving_version = current_version(layout, use_case)
    return out


def _checks(result: Any) -> dict[str, bool]:
    out = {}
    for ev in result.all_events:
        if ev.event_type_value == "ASSET_CHECK_EVALUATION":
            data = ev.event_specific_data
            out[data.check_name] = bool(data.passed)
    return out


def _metadata(result: Any, asset: str, key: str) -> str | None:
    for ev in result.all_events:
        if ev.event_type_value == "ASSET_MATERIALIZATION":
            mat = ev.event_specific_data.materialization
            if mat.asset_key.path[-1] == asset and key in mat.metadata:
                return str(mat.metadata[key].value)
    return None


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in text.splitlines() if line.strip())[:2000]
