"""Run the Dagster graph in-process against the home's persistent Dagster instance.

Used by ``looper demo`` and ``looper loop``; the same jobs run from ``dagster dev`` / the
``dagster`` CLI with ``workspace.yaml``."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from looper_pipelines.home import HomeLayout

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
PARTITION = "dagster/partition"
QUIET = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}


def instance_for(layout: HomeLayout) -> Any:
    from dagster import DagsterInstance

    d = layout.dagster_home
    d.mkdir(parents=True, exist_ok=True)
    cfg = d / "dagster.yaml"
    if not cfg.exists():
        cfg.write_text("telemetry:\n  enabled: false\n")
    os.environ.setdefault("DAGSTER_HOME", str(d))
    return DagsterInstance.from_config(str(d))


class Orchestrator:
    """Materialises one use case's data job over a day range and its model job."""

    def __init__(self, home: str | os.PathLike[str] | None = None) -> None:
        from looper_pipelines.defs.build import build_definitions

        self.layout = HomeLayout.of(home)
        self.defs = build_definitions(str(self.layout.root))
        self.instance = instance_for(self.layout)

    @contextlib.contextmanager
    def _run_output(self) -> Iterator[None]:
        """Tool output printed during runs (dbt's log lines, progress bars) goes to a file
        under the home; Dagster's own warnings and errors still reach the console."""
        path = self.layout.dagster_home / "run-output.log"
        with open(path, "a") as f, contextlib.redirect_stdout(f):
            yield

    def materialize_data(self, use_case: str, first_day: str, last_day: str) -> Any:
        from looper_pipelines.defs.factory import data_job_name

        job = self.defs.resolve_job_def(data_job_name(use_case))
        with self._run_output():
            return job.execute_in_process(run_config=QUIET, instance=self.instance,
                                          tags={RANGE_START: first_day, RANGE_END: last_day}, raise_on_error=False)

    def materialize_models(self, use_case: str) -> Any:
        from looper_pipelines.defs.factory import model_job_name

        job = self.defs.resolve_job_def(model_job_name(use_case))
        with self._run_output():
            return job.execute_in_process(run_config=QUIET, instance=self.instance, raise_on_error=False)


def failure_summary(result: Any) -> str:
    """Why a run failed, in a few lines (failed steps and failed blocking checks)."""
    lines = []
    for ev in result.all_events:
        if ev.event_type_value == "STEP_FAILURE":
            err = ev.event_specific_data.error
            lines.append(f"step {ev.step_key} failed: {err.message.strip().splitlines()[-1] if err else ''}")
        if ev.event_type_value == "ASSET_CHECK_EVALUATION":
            data = ev.event_specific_data
            if not data.passed:
                lines.append(f"check {data.asset_key.to_user_string()}:{data.check_name} failed")
    return "\n".join(lines) or "run failed"
