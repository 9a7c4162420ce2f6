"""Hostile inputs: blueprint files, import files and column mappings written to break Looper.

The contract, for every input: either it is valid, or the command prints exactly one
``looper: error: ...`` line on stderr (no traceback, bounded length) and exits 2 -- in
bounded time and memory. A corpus of known attacks runs through the real command line
(``python -m looper_pipelines.cli.main`` in a subprocess, under a memory limit); Hypothesis
mutates the packaged catalog blueprints and a valid mapping and runs the in-process entry
function (``looper_pipelines.cli.main.main``) under ``tracemalloc``.

One broken blueprint never takes the others down: ``LooperClient.local()`` serves the
valid use cases and names the broken file for its own, and the Dagster definitions load
with the valid use cases' assets.
"""

from __future__ import annotations

import csv
import io
import os
import random
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable, Sequence
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import looper_pipelines
from looper_pipelines.blueprints import BlueprintError, load_blueprint, parse_blueprint
from looper_pipelines.cli.main import main

ROOT = Path(looper_pipelines.__file__).resolve().parents[1]  # the code under test
CATALOG = ROOT / "looper_pipelines" / "blueprints" / "catalog"
NOTIFICATION = CATALOG / "notification_send.yaml"
NS_TEXT = NOTIFICATION.read_text()
LOOPER = [sys.executable, "-m", "looper_pipelines.cli.main"]
MAX_ERROR_CHARS = 2000  # one error line, whatever the input
SUBPROCESS_SECONDS = 8.0  # interpreter start-up included, on a loaded 2-core machine
IN_PROCESS_SECONDS = 2.0
IN_PROCESS_PEAK_BYTES = 64 * 1024 * 1024
SUBPROCESS_ADDRESS_SPACE = 768 * 1024 * 1024  # blueprint validate needs about 40 MB


# -- the contract ----------------------------------------------------------------------------
def assert_clean_outcome(rc: int, out: str, err: str, expect: str | None = None) -> None:
    """Valid (exit 0, nothing on stderr), or one bounded ``looper: error:`` line and exit 2.
    ``expect``: the input is invalid and the error line contains this fragment."""
    assert "Traceback" not in err, err[:3000]
    if rc == 0 and expect is None:
        assert err == "", err[:3000]
        return
    assert rc == 2, (rc, err[:3000])
    lines = err.splitlines()
    assert len(lines) == 1, err[:3000]
    assert lines[0].startswith("looper: error: "), err[:3000]
    assert len(err) <= MAX_ERROR_CHARS, (len(err), err[:500])
    if expect is not None:
        assert expect in lines[0], (expect, lines[0])


def _limit_memory() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (SUBPROCESS_ADDRESS_SPACE, SUBPROCESS_ADDRESS_SPACE))


def run_cli(args: Sequence[str], *, limit_memory: bool = True, timeout: float = 60) -> tuple[int, str, str, float]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LOOPER_BLUEPRINTS", None)
    started = time.monotonic()
    done = subprocess.run([*LOOPER, *args], capture_output=True, text=True, env=env, timeout=timeout,
                          errors="replace", preexec_fn=_limit_memory if limit_memory else None)
    return done.returncode, done.stdout, done.stderr, time.monotonic() - started


def run_in_process(argv: Sequence[str]) -> tuple[int, str, str, float, int]:
    """``looper argv`` through the entry function: exit code, stdout, stderr, seconds, and
    the peak of Python memory allocated meanwhile (tracemalloc)."""
    out, err = io.StringIO(), io.StringIO()
    tracemalloc.start()
    started = time.monotonic()
    try:
        with redirect_stdout(out), redirect_stderr(err):
            rc = main(list(argv))
    finally:
        elapsed = time.monotonic() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return rc, out.getvalue(), err.getvalue(), elapsed, peak


# -- hostile blueprints ------------------------------------------------------------------------
def _laughs_params() -> str:
    """model.params holding nine levels of nested aliases: 9**9 values once expanded, 600 bytes."""
    levels = ['a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]']
    levels += [f"{c}: &{c} [{', '.join([f'*{p}'] * 9)}]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)]
    return "params: {" + ", ".join(levels) + "}"


def _ns(old: str, new: str) -> bytes:
    assert old in NS_TEXT
    return NS_TEXT.replace(old, new).encode()


PARAMS_LINE = "params: {num_leaves: 15, learning_rate: 0.05, min_data_in_leaf: 40, feature_fraction: 0.9}"
EXPRESSION = "expression: click - 4 * unsubscribe"

HOSTILE_BLUEPRINTS: dict[str, tuple[Callable[[], bytes], str]] = {
    # name: (content, a fragment of the expected error line)
    "billion_laughs": (lambda: _ns(PARAMS_LINE, _laughs_params()), "aliases are expanded"),
    "latin1": (lambda: NS_TEXT.replace("Decide whether", "Décide whether").encode("latin-1"), "not UTF-8"),
    "utf16_bom": (lambda: NS_TEXT.encode("utf-16"), "UTF-16"),
    "utf16_no_bom": (lambda: NS_TEXT.encode("utf-16-le"), "UTF-16"),
    "huge_integer_constant": (lambda: _ns(EXPRESSION, "expression: click - 1" + "0" * 5000 + " * unsubscribe"),
                              "objective.expression"),
    "large_integer_constant": (lambda: _ns(EXPRESSION, "expression: click - 1" + "0" * 300 + " * unsubscribe"),
                               "objective.expression"),
    "huge_yaml_integer": (lambda: _ns("num_boost_round: 300", "num_boost_round: 1" + "0" * 5000), "out of range"),
    "long_expression": (lambda: _ns(EXPRESSION, "expression: click" + " + click" * 5000), "objective.expression"),
    "deep_expression": (lambda: _ns(EXPRESSION, "expression: " + "-" * 900 + "click"), "objective.expression"),
    "deep_parentheses": (lambda: _ns(EXPRESSION, "expression: " + "(" * 250 + "click" + ")" * 250),
                         "objective.expression"),
    "deep_yaml": (lambda: _ns("description: >", "extra: " + "[" * 5000 + "]" * 5000 + "\ndescription: >"), "nested"),
    "bad_cron": (lambda: _ns('cron: "0 3 * * *"', "cron: every tuesday"), "schedule.cron"),
    "impossible_cron": (lambda: _ns('cron: "0 3 * * *"', 'cron: "0 3 30 2 *"'), "schedule.cron"),
    "banana_leaves": (lambda: _ns("num_leaves: 15", "num_leaves: banana"), "num_leaves"),
    "infinite_weight": (lambda: _ns(EXPRESSION, "expression: click - 1e999 * unsubscribe"), "objective.expression"),
    "infinite_bound": (lambda: _ns("max_increase: 0.012", "max_increase: 1e999"), "max_increase"),
    "nan_parameter": (lambda: _ns("value: -4.0", "value: .nan"), "policy.parameters[0]"),
    "empty_file": (lambda: b"", "expected a mapping"),
    "a_list": (lambda: b"- name: notification_send\n- decision: {}\n", "expected a mapping"),
    "binary_garbage": (lambda: random.Random(7).randbytes(4096), "notification_send.yaml"),
    "ten_megabytes": (lambda: _ns("description: >", "description: " + "x" * (10 * 1024 * 1024) + "\nold: >"),
                      "larger than"),
    "tabs": (lambda: _ns("\n  kind: binary", "\n\tkind: binary"), "not valid YAML"),
    "duplicate_keys": (lambda: NS_TEXT.encode() + b"policy:\n  kind: threshold\n", "duplicate key 'policy'"),
    "python_tag": (lambda: _ns("description: >", "description: !!python/object/apply:os.system ['echo pwned']\nold: >"),
                   "python/object"),
    "nul_byte": (lambda: _ns("description: >", "description: a\x00b\nold: >"), "NUL"),
    "huge_extra_key": (lambda: NS_TEXT.encode() + b"? " + b"k" * 50_000 + b"\n: 1\n", "Extra inputs"),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_BLUEPRINTS))
def test_hostile_blueprint_is_one_error_line_through_the_cli(case: str, tmp_path: Path) -> None:
    """looper blueprint validate refuses each hostile blueprint with one bounded error line
    naming the file (and the field), exit 2, quickly and within a memory limit."""
    content, fragment = HOSTILE_BLUEPRINTS[case]
    path = tmp_path / "notification_send.yaml"
    path.write_bytes(content())
    rc, out, err, elapsed = run_cli(["blueprint", "validate", str(path)], timeout=30)
    assert_clean_outcome(rc, out, err, expect=fragment)
    assert err.startswith(f"looper: error: {path}: "), err[:500]
    assert elapsed < SUBPROCESS_SECONDS, elapsed


@pytest.mark.parametrize("case", ["billion_laughs", "deep_yaml", "latin1"])
def test_hostile_blueprint_in_a_home_is_reported_not_fatal(case: str, tmp_path: Path) -> None:
    """looper blueprint validate (no file: the home's blueprints) and looper status list
    the broken file and still show the valid use cases."""
    home = tmp_path / "home"
    (home / "blueprints").mkdir(parents=True)
    (home / "blueprints" / "broken_uc.yaml").write_bytes(HOSTILE_BLUEPRINTS[case][0]())
    rc, out, err, _ = run_cli(["blueprint", "validate", "--home", str(home)], timeout=30)
    assert_clean_outcome(rc, out, err, expect="broken_uc.yaml")
    assert "notification_send: ok" in out and "item_recommendation: ok" in out
    rc, out, err, _ = run_cli(["status", "--home", str(home)], limit_memory=False, timeout=120)
    assert rc == 0, err[-2000:]
    assert "Traceback" not in err
    assert "notification_send:" in out
    broken = [line for line in out.splitlines() if line.startswith("broken_uc: BROKEN BLUEPRINT")]
    assert len(broken) == 1 and "broken_uc.yaml" in broken[0] and len(broken[0]) <= MAX_ERROR_CHARS, out


def test_blueprint_errors_are_one_bounded_line_with_many_problems() -> None:
    """A blueprint with thousands of problems is still one line: the first problem, a few
    more, and how many there are in all."""
    d = yaml.safe_load(NS_TEXT)
    d["features"] = [{"name": "x" * 100_000, "type": "complex"} for _ in range(3000)]
    with pytest.raises(BlueprintError) as e:
        parse_blueprint(d, "many.yaml")
    text = str(e.value)
    assert "\n" not in text and len(text) <= MAX_ERROR_CHARS and "more" in text, text[:500]
    assert len(e.value.problems) >= 3000


# -- property: mutations of the catalog blueprints ----------------------------------------------
HOSTILE_SNIPPETS = [
    "&a", "*a", "*nope", "!!python/object:os.system", "!!binary", "\t", "{", "[", "]", "}", ":", "- ", "? ",
    "\x00", "\ufeff", "\x85", "\u2028", "'", '"', "#", "|", ">", "%YAML 1.1\n", "---\n", "...\n", "<<: *a",
    "1e999", ".inf", ".nan", "9" * 60, "-" * 200, "(" * 100, "\\", "0x7fffffffffffffffff", "~", "null",
]
CATALOG_TEXTS = {p.stem: p.read_text() for p in sorted(CATALOG.glob("*.yaml"))}
CATALOG_DOCS = {name: yaml.safe_load(text) for name, text in CATALOG_TEXTS.items()}

hostile_scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=30),
    st.text(alphabet=st.characters(max_codepoint=0x10FFFF, exclude_categories=("Cs",)), max_size=8),
    st.sampled_from(["banana", "every tuesday", "0 3 * * *", "*/5 * * * *", "click * click", "click - 1e308 * 1e308",
                     "-" * 500 + "click", "x" * 5000, "send", "dont_send", "item_0", "15", "1e999"]),
)
hostile_values = st.recursive(hostile_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)), max_leaves=12)


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += _paths(v, (*prefix, i))
    return out


def _replace(doc: Any, path: tuple[Any, ...], value: Any, delete: bool) -> Any:
    if not path:
        return value
    head, rest = path[0], path[1:]
    if isinstance(doc, dict):
        out = dict(doc)
        if delete and not rest:
            out.pop(head, None)
        else:
            out[head] = _replace(doc[head], rest, value, delete)
        return out
    out_list = list(doc)
    if delete and not rest:
        out_list.pop(head)
    else:
        out_list[head] = _replace(doc[head], rest, value, delete)
    return out_list


@st.composite
def mutated_blueprints(draw: st.DrawFn) -> tuple[str, bytes]:
    name = draw(st.sampled_from(sorted(CATALOG_TEXTS)))
    if draw(st.booleans()):  # structural: replace or delete a value somewhere in the tree
        doc = CATALOG_DOCS[name]
        for _ in range(draw(st.integers(1, 3))):
            paths = _paths(doc)
            path = draw(st.sampled_from(paths[1:]))
            doc = _replace(doc, path, draw(hostile_values), delete=draw(st.booleans()))
        return name, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True).encode("utf-8", "surrogatepass")
    data = CATALOG_TEXTS[name].encode()
    for _ in range(draw(st.integers(1, 4))):  # textual: insert, delete or replace bytes
        at = draw(st.integers(0, len(data)))
        op = draw(st.sampled_from(["insert", "delete", "replace", "truncate"]))
        piece = draw(st.one_of(st.sampled_from(HOSTILE_SNIPPETS).map(lambda s: s.encode("utf-8", "surrogatepass")),
                               st.binary(max_size=6)))
        if op == "insert":
            data = data[:at] + piece + data[at:]
        elif op == "delete":
            data = data[:at] + data[at + draw(st.integers(1, 40)):]
        elif op == "replace":
            data = data[:at] + piece + data[at + len(piece):]
        else:
            data = data[:at]
    return name, data


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(case=mutated_blueprints())
def test_mutated_catalog_blueprints_validate_or_fail_cleanly(case: tuple[str, bytes], tmp_path: Path) -> None:
    """Any mutation of a packaged blueprint is either valid or one bounded error line with
    exit 2, in under 2 s and 64 MB of Python allocations."""
    name, data = case
    path = tmp_path / f"{name}.yaml"
    path.write_bytes(data)
    rc, out, err, elapsed, peak = run_in_process(["blueprint", "validate", str(path)])
    assert_clean_outcome(rc, out, err)
    event("valid" if rc == 0 else "refused")
    if rc == 0:
        assert out.startswith(f"{path}: ok ("), out
        load_blueprint(path)  # and it loads like any blueprint
    assert elapsed < IN_PROCESS_SECONDS, elapsed
    assert peak < IN_PROCESS_PEAK_BYTES, peak


# -- cron expressions and LightGBM parameters ----------------------------------------------------
cron_field = st.one_of(
    st.just("*"), st.integers(0, 70).map(str), st.integers(0, 70).map(lambda n: f"*/{n}"),
    st.tuples(st.integers(0, 35), st.integers(0, 35)).map(lambda t: f"{t[0]}-{t[1]}"),
    st.tuples(st.integers(0, 35), st.integers(0, 35), st.integers(0, 12)).map(lambda t: f"{t[0]}-{t[1]}/{t[2]}"),
    st.sampled_from(["jan", "FEB", "dec", "sun", "mon-fri", "sat", "jan-mar", "L", "?", "1#2", "5/15", "H"]),
    st.lists(st.integers(0, 40).map(str), min_size=2, max_size=3).map(",".join),
)
cron_strings = st.one_of(
    st.lists(cron_field, min_size=5, max_size=5).map(" ".join),
    st.lists(cron_field, min_size=1, max_size=7).map(" ".join),
    st.sampled_from(sorted({"@daily", "@hourly", "@weekly", "@monthly", "@yearly", "@annually", "@midnight",
                            "@reboot", "every tuesday", ""})),
    st.text(max_size=20),
)


@settings(max_examples=400, deadline=None)
@given(expression=cron_strings)
def test_every_accepted_cron_is_accepted_by_dagster(expression: str) -> None:
    """A cron expression a blueprint accepts never makes Dagster's code location fail to
    load: Dagster 1.13 accepts every expression check_cron accepts."""
    from dagster._utils.schedules import is_valid_cron_string

    from looper_pipelines.blueprints.cron import check_cron

    try:
        check_cron(expression)
    except ValueError as e:
        assert len(str(e)) < 400
        return
    assert is_valid_cron_string(expression), expression


@pytest.mark.parametrize(
    ("params", "fragment"),
    [
        ({"num_leaves": "banana"}, "params.num_leaves must be an integer"),
        ({"num_leaves": 1}, "params.num_leaves"),
        ({"num_leaves": True}, "params.num_leaves"),
        ({"num_leaves": 15.5}, "params.num_leaves"),
        ({"max_leaves": 0}, "params.max_leaves"),
        ({"learning_rate": 0}, "params.learning_rate must be a number > 0"),
        ({"eta": -0.1}, "params.eta"),
        ({"learning_rate": float("inf")}, "params.learning_rate"),
        ({"min_data_in_leaf": -1}, "params.min_data_in_leaf"),
        ({"feature_fraction": 1.5}, "params.feature_fraction"),
        ({"num_leaves": 15, "max_leaves": 31}, "same LightGBM parameter"),
        ({"objective": "regression"}, "set by Looper"),
        ({"num_iterations": 10}, "set by Looper"),
        ({"some_future_param": {"nested": 1}}, "must be a number, a boolean, a text"),
        ({"some_future_param": float("nan")}, "finite"),
        ({"Bad Name": 1}, "not a LightGBM parameter name"),
    ],
)
def test_lightgbm_params_are_checked_by_type_and_range(params: dict[str, Any], fragment: str) -> None:
    """Common LightGBM parameters (and their aliases) are checked by type and range when the
    blueprint loads; parameters Looper sets itself are refused."""
    from looper_pipelines.blueprints.lgb_params import check_lgb_params

    with pytest.raises(ValueError, match=fragment):
        check_lgb_params(params)
    d = yaml.safe_load(NS_TEXT)
    d["model"]["params"] = params
    with pytest.raises(BlueprintError) as e:
        parse_blueprint(d, "x.yaml")
    assert e.value.problems[0][0] == "model.params"


def test_catalog_and_unknown_lightgbm_params_pass_through() -> None:
    """The packaged catalog's parameters validate, and a parameter Looper does not know is
    passed through to LightGBM as it would take it."""
    from looper_pipelines.blueprints.lgb_params import check_lgb_params

    for doc in CATALOG_DOCS.values():
        check_lgb_params(doc["model"]["params"])
    check_lgb_params({"monotone_constraints": [1, 0, -1], "boosting": "gbdt", "linear_tree": False, "top_k": 20})


# -- hostile import files and mappings ----------------------------------------------------------
FEATURES = {"tenure_days": 10.0, "sessions_last_7d": 2, "days_since_last_visit": 1.0, "notif_open_rate": 0.3,
            "notifs_last_7d": 1, "platform": "ios", "hour_of_day": 9}
MAPPING: dict[str, Any] = {
    "timestamp": "time", "decision_id": "decision", "subject_id": "user", "action": "action",
    "action_values": "name", "propensity": "p", "features": {k: k for k in FEATURES},
    "rewards": {"click": "click", "unsubscribe": "unsubscribe"},
}
UC = "hostile_uc"


def _rows(n: int = 12) -> list[dict[str, Any]]:
    return [{"decision": f"d{i}", "user": f"u{i}", "time": f"2026-01-0{1 + i % 5}T10:00:00+00:00",
             "action": ["send", "dont_send"][i % 2], "p": 0.5, **FEATURES, "click": i % 2, "unsubscribe": 0}
            for i in range(n)]


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with path.open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    return path


@pytest.fixture
def import_dir(tmp_path: Path) -> Path:
    """A blueprint (the packaged notification_send as hostile_uc), a good CSV and mapping."""
    bp = yaml.safe_load(NS_TEXT)
    bp["name"] = UC
    (tmp_path / f"{UC}.yaml").write_text(yaml.safe_dump(bp, sort_keys=False))
    _write_csv(tmp_path / "good.csv", _rows())
    (tmp_path / "mapping.yaml").write_text(yaml.safe_dump(MAPPING))
    return tmp_path


@pytest.fixture(scope="module")
def warm_importer(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One valid import first, so that the timed runs do not pay for importing modules."""
    d = tmp_path_factory.mktemp("warm")
    bp = yaml.safe_load(NS_TEXT)
    bp["name"] = UC
    (d / f"{UC}.yaml").write_text(yaml.safe_dump(bp, sort_keys=False))
    _write_csv(d / "good.csv", _rows())
    (d / "mapping.yaml").write_text(yaml.safe_dump(MAPPING))
    rc, out, err, _, _ = run_in_process(_import_args(d, d / "home", d / "mapping.yaml", d / "good.csv"))
    assert rc == 0 and "imported 12 decisions" in out, err


def _import_args(d: Path, home: Path, mapping: Path, data: Path) -> list[str]:
    return ["logs", "import", "--home", str(home), "--use-case", UC, "--blueprint", str(d / f"{UC}.yaml"),
            "--mapping", str(mapping), str(data)]


def _edited(rows: list[dict[str, Any]], **edits: Any) -> list[dict[str, Any]]:
    rows = [dict(r) for r in rows]
    for col, value in edits.items():
        rows[3][col] = value
    return rows


HUGE = 50 * 1024 * 1024

# name: (writes the data file, writes the mapping file or None for the good one, fragment)
HOSTILE_IMPORTS: dict[str, tuple[Callable[[Path], Path], Callable[[Path], Path] | None, str]] = {
    "huge_cell_action": (lambda d: _write_csv(d / "x.csv", _edited(_rows(), action="x" * HUGE)), None,
                         f"... ({HUGE} characters)"),
    "huge_cell_id": (lambda d: _write_csv(d / "x.csv", _edited(_rows(), decision="z" * 1_000_000)), None,
                     "(1000000 characters)"),
    "nul_in_decision_id": (lambda d: _write_csv(d / "x.csv", _edited(_rows(), decision="ab\x00cd")), None,
                           "control character"),
    "latin1_csv": (lambda d: _file(d / "x.csv", (d / "good.csv").read_text().replace("ios", "iós").encode("latin-1")),
                   None, "cannot read as CSV"),
    "utf16_csv": (lambda d: _file(d / "x.csv", (d / "good.csv").read_text().encode("utf-16")), None, "UTF-16"),
    "binary_csv": (lambda d: _file(d / "x.csv", random.Random(3).randbytes(20_000)), None, "x.csv"),
    "wrong_columns": (lambda d: _write_csv(d / "x.csv", [{"a": 1, "b": 2}]), None, "not found"),
    "huge_column_name_in_mapping": (lambda d: d / "good.csv",
                                    lambda d: _mapping_file(d, {**MAPPING, "propensity": "Q" * 60_000}),
                                    "(60000 characters)"),
    "huge_mapping_key": (lambda d: d / "good.csv",
                         lambda d: _mapping_file(d, {**MAPPING, "features": {**MAPPING["features"], "k" * 60_000: "p"}}),
                         "(60000 characters)"),
    "many_mapping_errors": (lambda d: d / "good.csv",
                            lambda d: _mapping_file(d, {**MAPPING, **{f"extra_{i}": i for i in range(3000)}}),
                            "more"),
    "huge_header": (lambda d: _write_csv(d / "x.csv", [{("H" * 100_000 if k == "p" else k): v for k, v in r.items()}
                                                      for r in _rows()]), None, "(100000 characters)"),
    "utf16_mapping": (lambda d: d / "good.csv",
                      lambda d: _raw(d, yaml.safe_dump(MAPPING).encode("utf-16")), "UTF-16"),
    "latin1_mapping": (lambda d: d / "good.csv",
                       lambda d: _raw(d, (yaml.safe_dump(MAPPING) + "# é\n").encode("latin-1")), "not UTF-8"),
    "nul_in_mapping": (lambda d: d / "good.csv", lambda d: _raw(d, b"timestamp: ti\x00me\n"), "NUL"),
    "duplicate_mapping_key": (lambda d: d / "good.csv",
                              lambda d: _raw(d, (yaml.safe_dump(MAPPING) + "propensity: other\n").encode()),
                              "duplicate key 'propensity'"),
    "huge_integer_in_mapping": (lambda d: d / "good.csv",
                                lambda d: _raw(d, (yaml.safe_dump(MAPPING) + "x: " + "9" * 5000 + "\n").encode()),
                                "out of range"),
    "laughs_mapping": (lambda d: d / "good.csv",
                       lambda d: _raw(d, (yaml.safe_dump(MAPPING) + _laughs_params().replace("params: {", "lol: {"))
                                      .encode()), "aliases are expanded"),
    "python_tag_mapping": (lambda d: d / "good.csv",
                           lambda d: _raw(d, b"!!python/object/apply:os.system ['echo pwned']\n"), "python/object"),
    "big_mapping_file": (lambda d: d / "good.csv",
                         lambda d: _raw(d, (yaml.safe_dump(MAPPING) + "#" + "x" * 200_000 + "\n").encode()),
                         "larger than"),
    "list_mapping": (lambda d: d / "good.csv", lambda d: _raw(d, b"- timestamp\n- action\n"), "expected a mapping"),
}
SUBPROCESS_IMPORTS = {"huge_cell_action", "utf16_mapping", "duplicate_mapping_key", "huge_column_name_in_mapping"}


def _mapping_file(d: Path, m: dict[str, Any]) -> Path:
    return _raw(d, yaml.safe_dump(m, width=10**9).encode())


def _raw(d: Path, data: bytes) -> Path:
    return _file(d / "hostile_mapping.yaml", data)


def _file(p: Path, data: bytes) -> Path:
    p.write_bytes(data)
    return p


@pytest.mark.parametrize("case", sorted(HOSTILE_IMPORTS))
def test_hostile_import_is_one_bounded_error_line(case: str, import_dir: Path) -> None:
    """looper logs import refuses each hostile data file or mapping with one error line of
    bounded length (an offending cell, column name or key quoted to at most 80 characters
    and its length), exit 2, nothing imported; through the real command line for a few."""
    write_data, write_mapping, fragment = HOSTILE_IMPORTS[case]
    data = write_data(import_dir)
    mapping = write_mapping(import_dir) if write_mapping else import_dir / "mapping.yaml"
    home = import_dir / "home"
    args = _import_args(import_dir, home, mapping, data)
    if case in SUBPROCESS_IMPORTS:
        rc, out, err, elapsed = run_cli(args, limit_memory=False, timeout=120)
        assert elapsed < 30, elapsed
    else:
        rc, out, err, _, _ = run_in_process(args)
    assert_clean_outcome(rc, out, err, expect=fragment)
    assert not (home / "logs").exists() or not any(p.is_file() for p in (home / "logs").rglob("*")), "nothing imported"


@st.composite
def mutated_mappings(draw: st.DrawFn) -> bytes:
    if draw(st.integers(0, 4)) == 0:  # textual mutation of the YAML
        data = yaml.safe_dump(MAPPING).encode()
        at = draw(st.integers(0, len(data)))
        piece = draw(st.one_of(st.sampled_from(HOSTILE_SNIPPETS).map(lambda s: s.encode("utf-8", "surrogatepass")),
                               st.binary(max_size=6)))
        return data[:at] + piece + data[at + draw(st.integers(0, 3)):]
    m: Any = MAPPING
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(m)[1:]))
        m = _replace(m, path, draw(hostile_values), delete=draw(st.booleans()))
    if draw(st.booleans()):
        m = {**m, draw(st.text(max_size=20)): draw(hostile_values)}
    return yaml.safe_dump(m, allow_unicode=True).encode("utf-8", "surrogatepass")


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                 HealthCheck.too_slow])
@given(mapping_bytes=mutated_mappings())
def test_mutated_mappings_import_or_fail_cleanly(mapping_bytes: bytes, import_dir: Path, warm_importer: None) -> None:
    """Any mutation of a valid column mapping either imports or is one bounded error line
    with exit 2, in under 2 s and 64 MB of Python allocations."""
    mapping = _raw(import_dir, mapping_bytes)
    home = import_dir / f"home-{time.monotonic_ns()}"
    rc, out, err, elapsed, peak = run_in_process(_import_args(import_dir, home, mapping, import_dir / "good.csv"))
    assert_clean_outcome(rc, out, err)
    event("valid" if rc == 0 else "refused")
    if rc == 0:
        assert "imported 12 decisions" in out, out
    assert elapsed < IN_PROCESS_SECONDS, elapsed
    assert peak < IN_PROCESS_PEAK_BYTES, peak


# -- one broken blueprint never takes the others down ----------------------------------------
BROKEN = {
    "yaml_syntax": b"name: broken_uc\ndecision: [unclosed\n",
    "bad_cron": NS_TEXT.replace("name: notification_send", "name: broken_uc")
    .replace('cron: "0 3 * * *"', "cron: every tuesday").encode(),
}


def _home_with_broken(tmp_path: Path, content: bytes) -> Path:
    home = tmp_path / "home"
    (home / "blueprints").mkdir(parents=True)
    (home / "blueprints" / "broken_uc.yaml").write_bytes(content)
    return home


@pytest.mark.parametrize("kind", sorted(BROKEN))
def test_client_serves_the_valid_use_cases_beside_a_broken_blueprint(
    kind: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """LooperClient.local() serves every valid use case when one blueprint is broken, logs
    a warning naming the broken file, and asking for its use case raises an error naming it."""
    from looper_pipelines.client import LooperClient
    from looper_pipelines.errors import UnknownUseCaseError

    monkeypatch.delenv("LOOPER_BLUEPRINTS", raising=False)
    home = _home_with_broken(tmp_path, BROKEN[kind])
    with caplog.at_level("WARNING"), LooperClient.local(home) as client:
        d = client.get_decision("notification_send", "u1", {"tenure_days": 10, "hour_of_day": 9})
        assert d.action in ("send", "dont_send")
        with pytest.raises(UnknownUseCaseError) as e:
            client.get_decision("broken_uc", "u1", {})
    assert "broken_uc.yaml" in str(e.value) and "broken" in str(e.value)
    assert "\n" not in str(e.value) and len(str(e.value)) <= MAX_ERROR_CHARS
    assert any("broken_uc.yaml" in r.getMessage() for r in caplog.records if r.levelname == "WARNING")


CLIENT_WITH_LAUGHS = """
import sys
from looper_pipelines.client import LooperClient
from looper_pipelines.errors import UnknownUseCaseError
with LooperClient.local(sys.argv[1]) as client:
    print(client.get_decision("notification_send", "u1", {"tenure_days": 10, "hour_of_day": 9}).action)
    try:
        client.get_decision("laughs_uc", "u1", {})
    except UnknownUseCaseError as e:
        print("refused:", e)
"""


def test_client_starts_quickly_beside_a_billion_laughs_blueprint(tmp_path: Path) -> None:
    """A 600-byte blueprint of nested aliases in the home does not hang LooperClient.local():
    it starts in seconds within a memory limit, serves the other use cases and names the file."""
    from assets_tests.conftest import run_python

    text = HOSTILE_BLUEPRINTS["billion_laughs"][0]().decode().replace("name: notification_send", "name: laughs_uc")
    home = _home_with_broken(tmp_path, b"")
    (home / "blueprints" / "broken_uc.yaml").unlink()
    (home / "blueprints" / "laughs_uc.yaml").write_text(text)
    limited = f"import resource; resource.setrlimit(resource.RLIMIT_AS, ({2 << 30}, {2 << 30}))\n"
    try:
        done = run_python(limited + CLIENT_WITH_LAUGHS, str(home), timeout=60)
    except subprocess.TimeoutExpired:
        pytest.fail("LooperClient.local() did not start within 60 s")
    assert done.returncode == 0, done.stderr[-3000:]
    lines = done.stdout.splitlines()
    assert lines[0] in ("send", "dont_send"), done.stdout
    assert lines[1].startswith("refused: ") and "laughs_uc.yaml" in lines[1] and "aliases" in lines[1], done.stdout


def test_dagster_definitions_load_beside_a_broken_blueprint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Dagster code location loads with the valid use cases' assets and jobs when one
    blueprint is broken (here a cron Dagster would refuse), and names the broken file in
    its metadata."""
    from dagster import AssetKey

    from looper_pipelines.defs.build import build_definitions

    monkeypatch.delenv("LOOPER_BLUEPRINTS", raising=False)
    for var in ("LOOPER_LOGS", "LOOPER_WAREHOUSE", "LOOPER_HOME"):  # build_definitions sets them for dbt
        monkeypatch.setenv(var, os.environ.get(var, ""))
    home = _home_with_broken(tmp_path, BROKEN["bad_cron"])
    (home / "blueprints" / "also_broken.yaml").write_bytes(HOSTILE_BLUEPRINTS["billion_laughs"][0]())
    defs = build_definitions(str(home))
    keys = set(defs.resolve_asset_graph().get_all_asset_keys())
    assert AssetKey(["notification_send", "trained_model"]) in keys
    assert AssetKey(["item_recommendation", "trained_model"]) in keys
    assert not any(k.path[0] in ("broken_uc", "also_broken") for k in keys)
    defs.resolve_job_def("notification_send_model")
    broken = defs.metadata["looper/broken_blueprints"].value
    assert set(broken) == {"broken_uc", "also_broken"}
    assert "schedule.cron" in broken["broken_uc"] and "aliases" in broken["also_broken"]
