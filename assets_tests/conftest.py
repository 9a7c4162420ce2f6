"""Shared fixtures: temporary Looper homes and a session-wide MLflow store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
OBD = REPO.parent / "shared" / "datasets" / "obd"
if not OBD.exists():  # CI clones next to a copy of shared/
    OBD = Path(os.environ.get("LOOPER_OBD_DIR", "/work/shared/datasets/obd"))


def run_python(code: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``code`` run by a fresh interpreter (``sys.argv[1:]`` = ``args``), with this
    repository importable; output captured as text."""
    return subprocess.run(
        [sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout,
        cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h
