"""Shared fixtures: temporary Looper homes and a session-wide MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")

REPO = Path(__file__).resolve().parents[1]
OBD = REPO.parent / "shared" / "datasets" / "obd"
if not OBD.exists():  # CI clones next to a copy of shared/
    OBD = Path(os.environ.get("LOOPER_OBD_DIR", "/work/shared/datasets/obd"))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h
