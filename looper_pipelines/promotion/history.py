"""An append-only history of promotion decisions per use case (JSON lines under the home).

It is what ``looper rollback`` reads to restore the previous champion and its policy."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any


class PromotionHistory:
    def __init__(self, state_dir: str | os.PathLike[str], use_case: str) -> None:
        self.path = Path(state_dir) / "promotions" / f"{use_case}.jsonl"

    def append(self, entry: dict[str, Any]) -> dict[str, Any]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        entry = {"time": time.time(), **entry}
        with open(self.path, "a") as f:
            f.write(json.dumps(entry, sort_keys=True, default=str) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return entry

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]

    def champions(self) -> list[dict[str, Any]]:
        """Entries that set a champion (promotions, overrides and rollbacks), oldest first."""
        return [e for e in self.entries() if e.get("champion_set")]
