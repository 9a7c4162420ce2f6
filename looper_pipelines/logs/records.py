"""Record kinds, id columns and time-ordered ids of the decision and observation logs.

In a segment file each record is one line: ``<crc32 as 8 hex digits> <JSON object>\\n``.
Timestamps are integer microseconds since the Unix epoch (UTC). In Parquet and in the
Polars frames the readers return, ``features`` and ``scores`` are JSON strings (their keys
depend on the use case) and ``timestamp`` is ``Datetime("us", "UTC")``: the column types are
in ``schemas`` (which needs Polars; this module, on the decision path, does not).
"""

from __future__ import annotations

import itertools
import os
import re
import threading
import time
from typing import Any

DECISIONS = "decisions"
OBSERVATIONS = "observations"
KINDS = (DECISIONS, OBSERVATIONS)

# columns held as JSON strings in Parquet but as objects in a segment line
JSON_COLUMNS = {DECISIONS: ("features", "scores"), OBSERVATIONS: ()}
ID_COLUMN = {DECISIONS: "decision_id", OBSERVATIONS: "observation_id"}

# decision ids: 12 hex digits of milliseconds, 8 of process, 8 of counter, then the use case
_ID_RE = re.compile(r"^[0-9a-f]{28}-([a-z][a-z0-9_]{0,62})$")


class IdGenerator:
    """Time-ordered unique ids: ``<ms:12 hex><process:8 hex><counter:8 hex>``.

    Unique across processes (a random per-process prefix, renewed after fork) and ordered
    by time to the millisecond; cheap enough for the request path (~0.3 µs).
    """

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        self._prefix = os.urandom(4).hex()
        self._counter = itertools.count(int.from_bytes(os.urandom(2), "big"))
        self._lock = threading.Lock()

    def new(self, now_us: int | None = None, suffix: str = "") -> str:
        """A new id (timestamped now, or at ``now_us``), followed by ``suffix``."""
        ms = (time.time_ns() // 1_000_000) if now_us is None else now_us // 1000
        return f"{ms & 0xFFFFFFFFFFFF:012x}{self._prefix}{next(self._counter) & 0xFFFFFFFF:08x}{suffix}"


ids = IdGenerator()


def new_decision_id(use_case: str, now_us: int | None = None) -> str:
    return ids.new(now_us, "-" + use_case)


def use_case_of(decision_id: str) -> str | None:
    """The use case a decision id names, or None for an id not made by Looper."""
    m = _ID_RE.match(decision_id)
    return m.group(1) if m else None


def now_us() -> int:
    return time.time_ns() // 1000


def __getattr__(name: str) -> Any:
    # the Polars schemas, for code that imported them from here
    if name in ("DECISION_SCHEMA", "OBSERVATION_SCHEMA", "SCHEMAS"):
        from looper_pipelines.logs import schemas

        return getattr(schemas, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
