"""The record of data-quality outcomes per logged day, and what it lets train.

Each evaluation of the checks covers a range of days (the partitions of its run); the newest
evaluation of a day replaces older ones. Training and promotion read this record: they go
ahead only when every day of the training examples, and every day of the latest evaluation,
passed every blocking check."""

from __future__ import annotations

import datetime as dt
import json
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from looper_pipelines.home import HomeLayout


def outcomes_path(layout: HomeLayout, use_case: str) -> Path:
    return layout.state / "checks" / f"{use_case}.json"


def _read(layout: HomeLayout, use_case: str) -> dict[str, Any]:
    p = outcomes_path(layout, use_case)
    try:
        doc = json.loads(p.read_text()) if p.exists() else {}
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) and isinstance(doc.get("days"), dict) else {}


def day_range(first: str, last: str) -> list[str]:
    a, b = dt.date.fromisoformat(first), dt.date.fromisoformat(last)
    return [(a + dt.timedelta(days=i)).isoformat() for i in range((b - a).days + 1)]


def logged_days(layout: HomeLayout, use_case: str) -> list[str]:
    """Days with compacted decisions of ``use_case``."""
    from looper_pipelines.logs.readers import compacted_days

    return compacted_days(layout.logs, "decisions", use_case)


def warehouse_days(layout: HomeLayout, use_case: str) -> list[str]:
    """The days of decisions in the use case's training examples (none without a warehouse)."""
    import duckdb

    if not layout.warehouse.exists():
        return []
    con = duckdb.connect(str(layout.warehouse), read_only=True)
    try:
        rows = con.execute(f'select distinct cast(decision_date as varchar) from "{use_case}".fct_training_examples').fetchall()
    except duckdb.Error:
        return []
    finally:
        con.close()
    return sorted(r[0] for r in rows)


def record_outcomes(layout: HomeLayout, use_case: str, days: list[str], results: dict[str, dict[str, Any]],
                    run_id: str) -> None:
    """``results``: check name → {"passed", "blocking", "details"}, for every day of ``days``."""
    doc = _read(layout, use_case)
    by_day: dict[str, Any] = doc.get("days", {})
    entry = {"checks": results, "time": time.time(), "run_id": run_id}
    for day in days:
        by_day[day] = entry
    p = outcomes_path(layout, use_case)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"days": by_day, "latest": days}, indent=1, sort_keys=True, default=str))
    os.replace(tmp, p)


def latest_outcomes(layout: HomeLayout, use_case: str) -> dict[str, bool]:
    """Check name → passed on every day of the latest evaluation (empty before any)."""
    doc = _read(layout, use_case)
    out: dict[str, bool] = {}
    for day in doc.get("latest", []):
        for name, s in doc["days"].get(day, {}).get("checks", {}).items():
            out[name] = out.get(name, True) and bool(s["passed"])
    return out


def failed_blocking_checks(layout: HomeLayout, use_case: str, days: Iterable[str] | None = None) -> list[str]:
    """Why training or promotion must not go ahead: blocking checks that failed on a day of
    ``days`` (default: the days of the training examples and of the latest evaluation), and
    days of those that no check has judged. Empty when nothing stands in the way."""
    doc = _read(layout, use_case)
    if not doc.get("days"):
        return ["no data-quality checks have run"]
    wanted = set(days) if days is not None else set(warehouse_days(layout, use_case)) | set(doc.get("latest", []))
    failed: dict[str, list[str]] = {}
    unchecked = []
    for day in sorted(wanted):
        entry = doc["days"].get(day)
        if entry is None:
            unchecked.append(day)
            continue
        for name, s in entry["checks"].items():
            if s["blocking"] and not s["passed"]:
                failed.setdefault(name, []).append(day)
    out = [f"{name} ({_days(ds)})" for name, ds in sorted(failed.items())]
    if unchecked:
        out.append(f"no data-quality checks recorded for {_days(unchecked)}")
    return out


def _days(days: list[str]) -> str:
    return days[0] if len(days) == 1 else f"{len(days)} days, {days[0]}..{days[-1]}"
