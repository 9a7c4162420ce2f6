"""Shared fixtures: temporary Looper homes and a session-wide MLflow store."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import httpx
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


def start_looper_serve(
    home: Path, *args: str, env: Mapping[str, str] | None = None, preexec_fn: Callable[[], None] | None = None,
) -> tuple[subprocess.Popen[str], str]:
    """``looper serve --home home *args`` on a free local port, once ``/healthz`` answers
    200: the process (stdout and stderr together, as text) and its base URL. Fails the test
    with the server's output when it exits or does not come up within a minute."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [sys.executable, "-m", "looper_pipelines.cli.main", "serve", "--home", str(home), "--port", str(port), *args]
    proc = subprocess.Popen(cmd, env=None if env is None else dict(env), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, preexec_fn=preexec_fn)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"looper serve did not come up: {proc.communicate()[0][-2000:]}")
        time.sleep(0.1)


def stop_process(proc: subprocess.Popen[str]) -> str:
    """Terminate ``proc`` (killed if it does not end within 30 s); its output."""
    proc.terminate()
    try:
        return proc.communicate(timeout=30)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.communicate()[0]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    h = tmp_path / "home"
    h.mkdir()
    return h
