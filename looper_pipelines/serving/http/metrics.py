"""Counters and a latency histogram of the HTTP service, rendered as Prometheus text (0.0.4).

Updated only from the event loop thread, so plain integers and lists suffice; recording a
request costs a few dictionary operations and one bisection.

Series:

- ``looper_decisions_total{use_case}``: decisions made (a batch counts each item decided)
- ``looper_observations_total{use_case}``: observations accepted
- ``looper_http_requests_total{route,status}``
- ``looper_http_request_duration_seconds{route}``: histogram, from the first byte of the
  body read to the response handed to the server
- ``looper_http_errors_total{kind,status}``: rejected requests and failed batch items
- ``looper_deployment_info{use_case,blueprint_version,model_version,policy_version}``: 1 per
  use case, the versions currently served (``model_version`` is ``none`` on a cold start)
- ``looper_deployment_degraded{use_case}``: 1 when the published version was refused (it
  did not verify) and an earlier model or the default action serves instead
- ``looper_deployment_no_verified_version{use_case}``: 1 when a version is published but
  no published version verifies, so the default action serves
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable
from typing import Protocol


class ServingState(Protocol):
    @property
    def degraded(self) -> bool: ...

    @property
    def no_verified_version(self) -> bool: ...

BUCKETS: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
)  # fmt: skip

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(**labels: str) -> str:
    return "{" + ",".join(f'{k}="{_escape(v)}"' for k, v in labels.items()) + "}"


def _num(x: float) -> str:
    return repr(float(x)) if isinstance(x, float) else str(x)


class Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)
        self.sum = 0.0

    def observe(self, seconds: float) -> None:
        self.counts[bisect_left(BUCKETS, seconds)] += 1
        self.sum += seconds


class HttpMetrics:
    def __init__(self) -> None:
        self.started = time.time()
        self.decisions: dict[str, int] = {}
        self.observations: dict[str, int] = {}
        self.requests: dict[tuple[str, int], int] = {}
        self.errors: dict[tuple[str, int], int] = {}
        self.latency: dict[str, Histogram] = {}

    # -- recording (event loop thread only) ---------------------------------------------------
    def request(self, route: str, status: int, seconds: float) -> None:
        key = (route, status)
        self.requests[key] = self.requests.get(key, 0) + 1
        h = self.latency.get(route)
        if h is None:
            h = self.latency[route] = Histogram()
        h.counts[bisect_left(BUCKETS, seconds)] += 1
        h.sum += seconds

    def decision(self, use_case: str, n: int = 1) -> None:
        self.decisions[use_case] = self.decisions.get(use_case, 0) + n

    def observation(self, use_case: str) -> None:
        self.observations[use_case] = self.observations.get(use_case, 0) + 1

    def error(self, kind: str, status: int) -> None:
        key = (kind, status)
        self.errors[key] = self.errors.get(key, 0) + 1

    # -- exposition ---------------------------------------------------------------------------
    def render(
        self,
        deployments: Iterable[tuple[str, str, str | None, str]] = (),
        serving: Iterable[tuple[str, ServingState]] = (),
    ) -> bytes:
        """The text exposition; ``deployments`` are ``(use_case, blueprint_version,
        model_version, policy_version)``, ``serving`` ``(use_case, serving status)``."""
        out: list[str] = []

        def family(name: str, kind: str, help_: str) -> None:
            out.append(f"# HELP {name} {help_}")
            out.append(f"# TYPE {name} {kind}")

        family("looper_decisions_total", "counter", "Decisions made over HTTP, by use case.")
        for uc, n in sorted(self.decisions.items()):
            out.append(f"looper_decisions_total{_labels(use_case=uc)} {n}")
        family(
            "looper_observations_total", "counter", "Observations accepted over HTTP, by use case."
        )
        for uc, n in sorted(self.observations.items()):
            out.append(f"looper_observations_total{_labels(use_case=uc)} {n}")
        family(
            "looper_http_requests_total",
            "counter",
            "HTTP requests to the /v1 routes, by route and status.",
        )
        for (route, status), n in sorted(self.requests.items()):
            out.append(f"looper_http_requests_total{_labels(route=route, status=str(status))} {n}")
        family(
            "looper_http_errors_total",
            "counter",
            "Rejected requests and failed batch items, by kind and status.",
        )
        for (kind, status), n in sorted(self.errors.items()):
            out.append(f"looper_http_errors_total{_labels(kind=kind, status=str(status))} {n}")
        name = "looper_http_request_duration_seconds"
        family(name, "histogram", "Time to handle a /v1 request, by route.")
        for route, h in sorted(self.latency.items()):
            acc = 0
            for bound, c in zip((*BUCKETS, float("inf")), h.counts, strict=True):
                acc += c
                le = "+Inf" if bound == float("inf") else repr(bound)
                out.append(f"{name}_bucket{_labels(route=route, le=le)} {acc}")
            out.append(f"{name}_sum{_labels(route=route)} {_num(h.sum)}")
            out.append(f"{name}_count{_labels(route=route)} {acc}")
        family(
            "looper_deployment_info",
            "gauge",
            "Versions served per use case (value 1; model_version 'none' on a cold start).",
        )
        for uc, bv, mv, pv in sorted(deployments, key=lambda d: d[0]):
            labels = _labels(
                use_case=uc, blueprint_version=bv, model_version=mv or "none", policy_version=pv
            )
            out.append(f"looper_deployment_info{labels} 1")
        states = sorted(serving, key=lambda s: s[0])
        family(
            "looper_deployment_degraded",
            "gauge",
            "1 when the published version did not verify and something else serves.",
        )
        for uc, st in states:
            out.append(f"looper_deployment_degraded{_labels(use_case=uc)} {int(st.degraded)}")
        family(
            "looper_deployment_no_verified_version",
            "gauge",
            "1 when no published version verifies and the default action serves.",
        )
        for uc, st in states:
            flag = int(st.no_verified_version)
            out.append(f"looper_deployment_no_verified_version{_labels(use_case=uc)} {flag}")
        family(
            "looper_http_start_time_seconds",
            "gauge",
            "Start time of the server process, Unix seconds.",
        )
        out.append(f"looper_http_start_time_seconds {_num(self.started)}")
        return ("\n".join(out) + "\n").encode()
