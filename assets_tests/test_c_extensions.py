"""The optional C extensions (``setup.py``): built where they can be, and not needed."""

from __future__ import annotations

import importlib
import shutil
import sysconfig
from pathlib import Path

import pytest

from assets_tests.conftest import run_python

EXTENSIONS = ["client._features", "serving._rowcall", "logs._append"]


@pytest.mark.parametrize("name", EXTENSIONS)
def test_each_extension_is_built_where_a_compiler_and_headers_are(name: str) -> None:
    headers = Path(sysconfig.get_paths()["include"], "Python.h").exists()
    if not (shutil.which("cc") or shutil.which("gcc")) or not headers:
        pytest.skip("no C compiler or Python headers here: the Python paths serve")
    try:
        importlib.import_module(f"looper_pipelines.{name}")
    except ImportError as e:
        pytest.fail(f"setup.py should have built looper_pipelines.{name}: {e}")


_WITHOUT_EXTENSIONS = """
import sys
for name in sys.argv[2:]:
    sys.modules["looper_pipelines." + name] = None  # as if setup.py had not built it
from looper_pipelines.client import LooperClient, LooperInputError
from looper_pipelines.client import features
from looper_pipelines.logs import read_decisions
assert features._features is None
home = sys.argv[1]
with LooperClient.local(home, seed=3) as client:
    assert type(client._engines["notification_send"].encoder.normalise_encode).__name__ == "method"
    ids = [client.get_decision("notification_send", f"u{i}", {"tenure_days": 1.0 * i, "hour_of_day": i % 24}).decision_id
           for i in range(200)]
    try:
        client.get_decision("notification_send", "u", {"tenure_days": -1.0, "hour_of_day": 3})
    except LooperInputError as e:
        assert e.field == "features.tenure_days", e.field
    else:
        raise AssertionError("a negative tenure was accepted")
assert read_decisions(home, "notification_send")["decision_id"].to_list() == ids
print("ok")
"""


def test_the_sdk_works_without_its_c_extensions(tmp_path: Path) -> None:
    out = run_python(_WITHOUT_EXTENSIONS, str(tmp_path), *EXTENSIONS)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
