"""Strategy blueprints: typed validation with field paths, versions, CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from looper_pipelines.blueprints import (
    BlueprintError,
    load_blueprint,
    load_catalog,
    parse_blueprint,
)
from looper_pipelines.blueprints.loader import PACKAGED_CATALOG

NOTIFICATION = PACKAGED_CATALOG / "notification_send.yaml"


def _doc() -> dict:
    return yaml.safe_load(NOTIFICATION.read_text())


def test_packaged_catalog_loads_both_examples() -> None:
    cat = load_catalog()
    assert {"notification_send", "item_recommendation"} <= set(cat)
    ns = cat["notification_send"]
    assert ns.decision.kind == "binary" and ns.decision.treatment == "send"
    assert ns.objective.weights == {"click": 1.0, "unsubscribe": -4.0}
    assert ns.experiment is not None and ns.label("click").window_hours == 24
    assert cat["item_recommendation"].decision.kind == "multi_action"


def test_version_is_a_content_hash_of_the_normalised_form() -> None:
    a = parse_blueprint(_doc())
    d = _doc()
    d["description"] = a.description  # same content, different YAML text order
    b = parse_blueprint(dict(reversed(list(d.items()))))
    assert a.version == b.version
    d["policy"]["parameters"][1]["value"] = 0.02
    c = parse_blueprint(d)
    assert c.version != a.version and c.policy_version != a.policy_version
    assert c.lineage_version == a.lineage_version  # policy change alone: same model lineage
    d2 = _doc()
    d2["features"].append({"name": "extra", "type": "float", "default": 0.0})
    assert parse_blueprint(d2).lineage_version != a.lineage_version


@pytest.mark.parametrize(
    ("mutate", "path", "fragment"),
    [
        (lambda d: d["decision"].update(actions=["a", "b", "c"]), "decision", "exactly 2 actions"),
        (lambda d: d["decision"].update(default_action="maybe"), "decision", "default_action"),
        (lambda d: d["features"][5].pop("categories"), "features[5]", "categories"),
        (lambda d: d["features"][1].update(default=1.5), "features[1]", "not an integer"),
        (lambda d: d["features"][0].update(type="complex"), "features[0].type", "Input should be"),
        (lambda d: d["labels"][0].update(window_hours=-1), "labels[0].window_hours", "greater than 0"),
        (lambda d: d["objective"].update(expression="click * unsubscribe"), "objective.expression", "not linear"),
        (lambda d: d["objective"].update(expression="click - views"), "(top level)", "'views'"),
        (lambda d: d["policy"].update(kind="magic"), "policy.kind", "Input should be"),
        (lambda d: d["policy"]["parameters"][0].update(value=99), "policy.parameters[0]", "outside"),
        (lambda d: d["experiment"]["arms"][0].update(probability=0.9), "experiment", "sum to 1"),
        (lambda d: d.update(surprise=1), "surprise", "Extra inputs"),
        (lambda d: d["policy"]["parameters"][0].update(value=4.0, low=0.0, high=20.0), "(top level)", "same sign"),
    ],
)
def test_errors_name_the_field(mutate, path: str, fragment: str) -> None:  # type: ignore[no-untyped-def]
    d = _doc()
    mutate(d)
    with pytest.raises(BlueprintError) as e:
        parse_blueprint(d, "x.yaml")
    assert any(p == path and fragment in m for p, m in e.value.problems), e.value.problems
    assert "x.yaml" in str(e.value)


def test_file_errors_name_the_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.yaml"
    bad.write_text("name: [unclosed\n")
    with pytest.raises(BlueprintError, match=r"broken\.yaml") as e:
        load_blueprint(bad)
    assert "line" in e.value.problems[0][0]
    with pytest.raises(BlueprintError, match="No such file"):
        load_blueprint(tmp_path / "missing.yaml")
    other = tmp_path / "other_name.yaml"
    other.write_text(NOTIFICATION.read_text())
    with pytest.raises(BlueprintError, match="must match the file name"):
        load_blueprint(other)


def test_cli_validate_and_show(tmp_path: Path) -> None:
    looper = [sys.executable, "-m", "looper_pipelines.cli.main"]
    ok = subprocess.run([*looper, "blueprint", "validate", str(NOTIFICATION)], capture_output=True, text=True)
    assert ok.returncode == 0 and "ok (notification_send" in ok.stdout
    bad = tmp_path / "bad.yaml"
    d = _doc()
    d["labels"][0]["window_hours"] = 0
    bad.write_text(yaml.safe_dump(d))
    res = subprocess.run([*looper, "blueprint", "validate", str(bad)], capture_output=True, text=True)
    assert res.returncode == 2 and "labels[0].window_hours" in res.stderr and "bad.yaml" in res.stderr
    show = subprocess.run([*looper, "blueprint", "show", "item_recommendation", "--home", str(tmp_path)],
                          capture_output=True, text=True)
    assert show.returncode == 0 and "lineage_version" in show.stdout
    unknown = subprocess.run([*looper, "blueprint", "show", "nope", "--home", str(tmp_path)], capture_output=True, text=True)
    assert unknown.returncode == 2 and "no blueprint named 'nope'" in unknown.stderr
