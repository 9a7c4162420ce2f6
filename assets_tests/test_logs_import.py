"""``looper logs import``: the Open Bandit sample end to end, idempotency, and bad input."""

from __future__ import annotations

import functools
import hashlib
import json
import math
import shutil
import subprocess
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import yaml

from looper_pipelines.blueprints import BlueprintError, load_blueprint, load_catalog
from looper_pipelines.cli.main import main
from looper_pipelines.logs import read_decisions, read_observations
from looper_pipelines.logs.importer import (
    ImportReport,
    LogImportError,
    event_observation_id,
    import_logs,
    load_mapping,
    observation_id,
    read_ledger,
)

REPO = Path(__file__).resolve().parents[1]
OBD = Path("/work/shared/datasets/obd/women")
BTS = OBD / "bts.csv"
RANDOM = OBD / "random.csv"
BLUEPRINT = REPO / "examples" / "obd" / "open_bandit_women.yaml"
BLUEPRINT_RANDOM = REPO / "examples" / "obd" / "open_bandit_women_random.yaml"
MAPPING = REPO / "examples" / "obd" / "mapping.yaml"
UC = "open_bandit_women"
UC_RANDOM = "open_bandit_women_random"
FEATURES = ["position", "user_feature_0", "user_feature_1", "user_feature_2", "user_feature_3"]

pytestmark = pytest.mark.skipif(not BTS.is_file(), reason="Open Bandit sample not available")


def _mapping(**changes: Any) -> dict[str, Any]:
    m = yaml.safe_load(MAPPING.read_text())
    for k, v in changes.items():
        if v is None:
            m.pop(k, None)
        else:
            m[k] = v
    return m


@functools.cache
def _bts_head() -> pl.DataFrame:
    return pl.read_csv(BTS, n_rows=400)


def _small_csv(tmp_path: Path, name: str = "small.csv", rows: int = 30, **edits: Any) -> Path:
    """The first ``rows`` rows of bts.csv, with ``column=(row_index, value)`` edits."""
    df = _bts_head().head(rows)
    for col, (i, value) in edits.items():
        vals = df.get_column(col).cast(pl.Utf8).to_list()
        vals[i] = value
        df = df.with_columns(pl.Series(col, vals, dtype=pl.Utf8))
    path = tmp_path / name
    df.write_csv(path)
    return path


@functools.cache
def _csv_rows(path: Path) -> pl.DataFrame:
    """A file's rows, numbered from 1 (as the importer numbers them), timestamps parsed."""
    df = pl.read_csv(path, infer_schema_length=None)
    return df.with_row_index("row", offset=1).with_columns(
        pl.col("timestamp").str.to_datetime("%Y-%m-%d %H:%M:%S%.f%:z", time_unit="us").dt.convert_time_zone("UTC")
    )


# -- the Open Bandit sample ----------------------------------------------------------------
@pytest.fixture(scope="module")
def obd_home(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, ImportReport, ImportReport]:
    home = tmp_path_factory.mktemp("obd_home")
    bts = import_logs(home, UC, BLUEPRINT, MAPPING, [BTS])
    rnd = import_logs(home, UC_RANDOM, BLUEPRINT_RANDOM, MAPPING, [RANDOM])
    return home, bts, rnd


@pytest.mark.parametrize(("use_case", "path", "bp_path"), [(UC, BTS, BLUEPRINT), (UC_RANDOM, RANDOM, BLUEPRINT_RANDOM)])
def test_obd_decisions_match_the_csv(
    obd_home: tuple[Path, ImportReport, ImportReport], use_case: str, path: Path, bp_path: Path
) -> None:
    home = obd_home[0]
    bp = load_blueprint(bp_path)
    dec = read_decisions(home, use_case)
    assert dec.height == 10_000
    assert dec.get_column("decision_id").n_unique() == 10_000
    assert all(d.endswith(f"-{use_case}") for d in dec.get_column("decision_id").to_list())

    # the default subject id is "<file stem>:<row>": join each decision to its CSV row
    dec = dec.with_columns(
        pl.col("subject_id").str.split(":").list.get(1).cast(pl.UInt32).alias("row"),
        pl.col("subject_id").str.split(":").list.get(0).alias("source"),
    )
    assert dec.get_column("source").unique().to_list() == [path.stem]
    both = dec.join(_csv_rows(path), on="row", how="inner", suffix="_csv")
    assert both.height == 10_000

    assert both.get_column("timestamp").to_list() == both.get_column("timestamp_csv").to_list()
    assert both.get_column("action_index").to_list() == both.get_column("item_id").to_list()
    assert both.get_column("action").to_list() == [f"item_{i}" for i in both.get_column("item_id")]
    # the logging policy's propensity, exactly as written in the file
    assert both.get_column("propensity").to_list() == both.get_column("propensity_score").to_list()
    feats = [json.loads(s) for s in both.get_column("features").to_list()]
    expected = both.select(FEATURES).to_dicts()
    assert feats == expected
    assert isinstance(feats[0]["position"], int)

    assert set(both.get_column("scores").to_list()) == {"{}"}
    assert both.get_column("model_version").null_count() == 10_000
    assert set(both.get_column("blueprint_version").to_list()) == {bp.version}
    assert set(both.get_column("policy_version").to_list()) == {"imported"}
    assert set(both.get_column("explored").to_list()) == {False}
    assert both.get_column("experiment_arm").null_count() == 10_000
    assert both.get_column("assignment_probability").null_count() == 10_000
    if use_case == UC_RANDOM:
        assert both.get_column("propensity").unique().to_list() == pytest.approx([1 / 46])
    else:
        assert both.get_column("propensity").n_unique() > 100


@pytest.mark.parametrize(("use_case", "path"), [(UC, BTS), (UC_RANDOM, RANDOM)])
def test_obd_one_click_observation_per_clicked_row(
    obd_home: tuple[Path, ImportReport, ImportReport], use_case: str, path: Path
) -> None:
    home = obd_home[0]
    csv = _csv_rows(path)
    clicked_rows = set(csv.filter(pl.col("click") == 1).get_column("row").to_list())
    assert len(clicked_rows) == csv.get_column("click").sum() > 0

    dec = read_decisions(home, use_case)
    obs = read_observations(home, use_case)
    assert obs.height == len(clicked_rows)
    assert set(obs.get_column("name").to_list()) == {"click"}
    assert set(obs.get_column("value").to_list()) == {1.0}
    assert obs.get_column("observation_id").n_unique() == obs.height

    joined = obs.join(dec, on="decision_id", how="inner", suffix="_decision")
    assert joined.height == obs.height
    rows = {int(s.split(":")[1]) for s in joined.get_column("subject_id").to_list()}
    assert rows == clicked_rows
    delay = joined.get_column("timestamp") - joined.get_column("timestamp_decision")
    assert set(delay.dt.total_microseconds().to_list()) == {1_000_000}  # inside the 1 h window
    sha = read_ledger(home)[0 if use_case == UC else 1]["sha256"]
    for oid, subject in zip(joined.get_column("observation_id"), joined.get_column("subject_id"), strict=True):
        assert oid == observation_id(use_case, sha, int(subject.split(":")[1]), "click")


def test_obd_report_ledger_and_catalog(obd_home: tuple[Path, ImportReport, ImportReport]) -> None:
    home, bts, rnd = obd_home
    assert bts.use_case == UC and bts.decisions == 10_000
    assert bts.observations == {"click": int(_csv_rows(BTS).get_column("click").sum())}
    assert bts.files[0].rows == 10_000
    assert bts.files[0].first_timestamp.isoformat().startswith("2019-11-24T00:01:29")
    assert "imported 10000 decisions" in bts.summary()
    assert json.loads(json.dumps(rnd.to_dict()))["decisions"] == 10_000

    catalog = load_catalog(home)
    assert catalog[UC].version == load_blueprint(BLUEPRINT).version
    assert catalog[UC_RANDOM].version == load_blueprint(BLUEPRINT_RANDOM).version
    assert (home / "blueprints" / f"{UC}.yaml").read_text() == BLUEPRINT.read_text()

    ledger = read_ledger(home)
    assert [(e["use_case"], e["status"], e["decisions"]) for e in ledger] == [
        (UC, "complete", 10_000),
        (UC_RANDOM, "complete", 10_000),
    ]
    assert ledger[0]["file"] == str(BTS)


def test_obd_blueprint_lists_the_categories_in_the_data() -> None:
    bp = load_blueprint(BLUEPRINT)
    assert bp.decision.actions == [f"item_{i}" for i in range(46)]
    both = pl.concat([_csv_rows(BTS), _csv_rows(RANDOM)])
    for f in bp.features[1:]:
        assert sorted(f.categories or []) == sorted(both.get_column(f.name).unique().to_list())
    rnd = load_blueprint(BLUEPRINT_RANDOM)
    a, b = bp.normalised(), rnd.normalised()
    for d in (a, b):
        d.pop("name")
        d.pop("description")
    assert a == b


# -- idempotency ---------------------------------------------------------------------------
def test_reimport_is_refused_and_forced_reimport_keeps_observations_unique(tmp_path: Path) -> None:
    small = _small_csv(tmp_path, rows=400)
    clicks = int(pl.read_csv(small).get_column("click").sum())
    assert clicks > 0
    home = tmp_path / "home"
    import_logs(home, UC, BLUEPRINT, MAPPING, [small])
    first_obs = read_observations(home, UC)
    assert first_obs.height == clicks

    with pytest.raises(LogImportError, match="already imported into use case 'open_bandit_women'") as ei:
        import_logs(home, UC, BLUEPRINT, MAPPING, [small])
    assert ei.value.field == str(small)
    # the same content under another name is the same file
    copy = tmp_path / "copy.csv"
    shutil.copy(small, copy)
    with pytest.raises(LogImportError, match="already imported"):
        import_logs(home, UC, BLUEPRINT, MAPPING, [copy])
    assert read_decisions(home, UC).height == 400

    import_logs(home, UC, BLUEPRINT, MAPPING, [small], force=True)
    assert read_decisions(home, UC).height == 800  # decisions are logged again
    obs = read_observations(home, UC)
    assert obs.height == clicks  # observations are deduplicated by their deterministic id
    assert set(obs.get_column("observation_id")) == set(first_obs.get_column("observation_id"))
    assert [e["status"] for e in read_ledger(home)] == ["complete", "complete"]

    # the same file into a different home gives the same observation ids
    other = tmp_path / "other"
    import_logs(other, UC, BLUEPRINT, MAPPING, [small])
    assert set(read_observations(other, UC).get_column("observation_id")) == set(
        first_obs.get_column("observation_id")
    )


def test_unfinished_import_is_refused_without_force(tmp_path: Path) -> None:
    small = _small_csv(tmp_path, rows=5)
    home = tmp_path / "home"
    import_logs(home, UC, BLUEPRINT, MAPPING, [small])
    ledger = home / "state" / "imports.json"
    data = json.loads(ledger.read_text())
    data["imports"][0]["status"] = "in_progress"
    ledger.write_text(json.dumps(data))
    with pytest.raises(LogImportError, match="did not finish"):
        import_logs(home, UC, BLUEPRINT, MAPPING, [small])


# -- bad input -----------------------------------------------------------------------------
def _fails(tmp_path: Path, files: list[Path], mapping: Any = None, use_case: str = UC,
           blueprint: Path = BLUEPRINT) -> LogImportError:
    home = tmp_path / "home"
    with pytest.raises(LogImportError) as ei:
        import_logs(home, use_case, blueprint, mapping if mapping is not None else MAPPING, files)
    # nothing was imported or registered
    assert read_decisions(home, UC).height == 0
    assert read_observations(home, UC).height == 0
    assert read_ledger(home) == []
    assert not (home / "blueprints" / f"{UC}.yaml").exists()
    return ei.value


def test_missing_column(tmp_path: Path) -> None:
    df = _bts_head().head(10).drop("user_feature_0")
    path = tmp_path / "bts.csv"
    df.write_csv(path)
    e = _fails(tmp_path, [path])
    assert e.field == "mapping.features.user_feature_0"
    assert str(e).startswith(f"mapping.features.user_feature_0: column 'user_feature_0' not found in {path} (columns: ")
    assert "propensity_score" in str(e)


def test_mapping_names_a_column_the_file_lacks(tmp_path: Path) -> None:
    e = _fails(tmp_path, [_small_csv(tmp_path)], _mapping(propensity="pscore"))
    assert e.field == "mapping.propensity" and "column 'pscore' not found" in str(e)


def test_unknown_feature_in_mapping(tmp_path: Path) -> None:
    m = _mapping()
    m["features"]["colour"] = "position"
    e = _fails(tmp_path, [_small_csv(tmp_path)], m)
    assert e.field == "mapping.features.colour"
    assert "not a feature of blueprint 'open_bandit_women'" in str(e)


def test_unknown_label_in_mapping(tmp_path: Path) -> None:
    e = _fails(tmp_path, [_small_csv(tmp_path)], _mapping(rewards={"purchase": "click"}))
    assert e.field == "mapping.rewards.purchase" and "not a label" in str(e)


def test_missing_required_feature(tmp_path: Path) -> None:
    m = _mapping()
    del m["features"]["position"]
    e = _fails(tmp_path, [_small_csv(tmp_path)], m)
    assert e.field == "mapping.features" and "position" in str(e) and "required" in str(e)


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"propensity": None}, "mapping.propensity"),
        ({"action_values": "position"}, "mapping.action_values"),
        ({"colour": "x"}, "mapping.colour"),
        ({"timestamp_format": "day-month"}, "mapping.timestamp_format"),
        ({"features": {"position": 3}}, "mapping.features.position"),
        ({"timestamp": ""}, "mapping.timestamp"),
    ],
)
def test_invalid_mapping_names_the_field(tmp_path: Path, changes: dict[str, Any], field: str) -> None:
    e = _fails(tmp_path, [_small_csv(tmp_path)], _mapping(**changes))
    assert e.field == field, str(e)


def test_mapping_file_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("timestamp: [unclosed\n")
    with pytest.raises(LogImportError, match="not valid YAML"):
        load_mapping(bad)
    with pytest.raises(LogImportError, match="cannot read"):
        load_mapping(tmp_path / "absent.yaml")
    bad.write_text("- a\n- b\n")
    with pytest.raises(LogImportError, match="expected a mapping"):
        load_mapping(bad)


@pytest.mark.parametrize(
    ("edits", "field", "row", "column", "problem"),
    [
        ({"propensity_score": (6, "1.5")}, "mapping.propensity", 7, "propensity_score", "outside (0, 1]"),
        ({"propensity_score": (0, "0")}, "mapping.propensity", 1, "propensity_score", "outside (0, 1]"),
        ({"propensity_score": (3, "")}, "mapping.propensity", 4, "propensity_score", "missing propensity"),
        ({"propensity_score": (3, "high")}, "mapping.propensity", 4, "propensity_score", "not a number"),
        ({"item_id": (9, "46")}, "mapping.action", 10, "item_id", "out of range"),
        ({"item_id": (2, "-1")}, "mapping.action", 3, "item_id", "out of range"),
        ({"item_id": (2, "3.5")}, "mapping.action", 3, "item_id", "not an integer"),
        ({"click": (4, "inf")}, "mapping.rewards.click", 5, "click", "not finite"),
        ({"click": (4, "NaN")}, "mapping.rewards.click", 5, "click", "not finite"),
        ({"click": (4, "2")}, "mapping.rewards.click", 5, "click", "expected 0 or 1"),
        ({"timestamp": (8, "yesterday")}, "mapping.timestamp", 9, "timestamp", "cannot parse timestamp"),
        ({"position": (5, "4")}, "mapping.features.position", 6, "position", "above the maximum"),
        ({"position": (5, "1.5")}, "mapping.features.position", 6, "position", "expected an integer"),
        ({"position": (5, "")}, "mapping.features.position", 6, "position", "required"),
        ({"user_feature_1": (11, "0000")}, "mapping.features.user_feature_1", 12, "user_feature_1",
         "'0000' is not one of"),
    ],
)
def test_bad_values_name_file_row_and_column(
    tmp_path: Path, edits: dict[str, Any], field: str, row: int, column: str, problem: str
) -> None:
    good = _small_csv(tmp_path, "good.csv")
    bad = _small_csv(tmp_path, "bad.csv", **edits)
    e = _fails(tmp_path, [good, bad])  # the good first file is not imported either
    assert e.field == field, str(e)
    assert (e.file, e.row, e.column) == (str(bad), row, column), str(e)
    assert f"{bad} row {row}, column {column!r}" in str(e)
    assert problem in str(e)


def test_bad_rows_are_counted(tmp_path: Path) -> None:
    df = _bts_head().head(20).with_columns(pl.lit(2.0).alias("propensity_score"))
    path = tmp_path / "bts.csv"
    df.write_csv(path)
    e = _fails(tmp_path, [path])
    assert e.row == 1 and "(19 more rows with this problem)" in str(e)


def test_wrong_blueprint_name(tmp_path: Path) -> None:
    e = _fails(tmp_path, [_small_csv(tmp_path)], use_case="open_bandit_men")
    assert e.field == "blueprint" and "'open_bandit_women', not 'open_bandit_men'" in str(e)
    with pytest.raises(LogImportError, match="invalid use case name"):
        import_logs(tmp_path / "home", "Bad-Name", BLUEPRINT, MAPPING, [_small_csv(tmp_path)])


def test_invalid_blueprint_file(tmp_path: Path) -> None:
    bp = tmp_path / UC / f"{UC}.yaml"
    bp.parent.mkdir()
    bp.write_text(BLUEPRINT.read_text().replace("kind: multi_action", "kind: several"))
    with pytest.raises(BlueprintError, match=r"decision\.kind"):
        import_logs(tmp_path / "home", UC, bp, MAPPING, [_small_csv(tmp_path)])


def test_unreadable_files(tmp_path: Path) -> None:
    missing = tmp_path / "absent.csv"
    e = _fails(tmp_path, [missing])
    assert e.field == str(missing) and "does not exist" in str(e)
    e = _fails(tmp_path, [tmp_path])
    assert "is not a file" in str(e)
    broken = tmp_path / "broken.parquet"
    broken.write_bytes(b"this is not parquet at all")
    e = _fails(tmp_path, [broken])
    assert e.field == str(broken) and "cannot read as PARQUET" in str(e)
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    e = _fails(tmp_path, [empty])
    assert e.field == str(empty) and "cannot read as CSV" in str(e)
    header_only = tmp_path / "header.csv"
    header_only.write_text(BTS.open().readline())
    e = _fails(tmp_path, [header_only])
    assert "has no data rows" in str(e)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "bts.json"
    path.write_text("{}")
    e = _fails(tmp_path, [path])
    assert e.field == str(path) and "unsupported file type '.json'" in str(e)


def test_same_file_twice_and_no_files(tmp_path: Path) -> None:
    small = _small_csv(tmp_path)
    e = _fails(tmp_path, [small, small])
    assert "same content" in str(e)
    with pytest.raises(LogImportError, match="non-empty list"):
        import_logs(tmp_path / "home", UC, BLUEPRINT, MAPPING, [])


def test_registered_blueprint_conflicts(tmp_path: Path) -> None:
    home = tmp_path / "home"
    small = _small_csv(tmp_path, rows=5)
    import_logs(home, UC, BLUEPRINT, MAPPING, [small])
    changed = tmp_path / "changed" / f"{UC}.yaml"
    changed.parent.mkdir()
    changed.write_text(BLUEPRINT.read_text().replace("window_hours: 1,", "window_hours: 2,"))
    other = _small_csv(tmp_path, "other.csv", rows=6)
    with pytest.raises(LogImportError, match="registered with blueprint version") as ei:
        import_logs(home, UC, changed, MAPPING, [other])
    assert ei.value.field == "blueprint"
    import_logs(home, UC, changed, MAPPING, [other], force=True)
    assert load_catalog(home)[UC].version == load_blueprint(changed).version

    # a different blueprint with the name of a packaged one would be shadowed: refused
    shadow = tmp_path / "shadow" / "item_recommendation.yaml"
    shadow.parent.mkdir()
    shadow.write_text(BLUEPRINT.read_text().replace(f"name: {UC}", "name: item_recommendation"))
    with pytest.raises(LogImportError, match="already in"):
        import_logs(home, "item_recommendation", shadow, MAPPING, [other])


# -- other column types: Parquet, action names, subject ids, arms, unix timestamps ---------
TOY_BLUEPRINT = """
name: toy_offers
decision:
  kind: binary
  actions: [hold, send]
  default_action: hold
features:
  - {name: score, type: float, default: null}
  - {name: vip, type: bool, default: false}
  - {name: segment, type: category, categories: ["007", "b"]}
labels:
  - {name: click, kind: binary, window_hours: 0.0001}
  - {name: revenue, kind: real, window_hours: 24, aggregation: sum}
objective:
  expression: click + revenue
policy:
  kind: threshold
experiment:
  share: 0.5
  arms:
    - {name: control, action: hold, probability: 0.5}
    - {name: treat, action: send, probability: 0.5}
"""


def _toy(tmp_path: Path) -> tuple[Path, dict[str, Any]]:
    bp = tmp_path / "toy_offers.yaml"
    bp.write_text(TOY_BLUEPRINT)
    mapping = {
        "timestamp": "ts",
        "timestamp_format": "unix_ms",
        "action": "act",
        "action_values": "name",
        "propensity": "p",
        "features": {"score": "s", "vip": "v", "segment": "seg"},
        "rewards": {"click": "c", "revenue": "r"},
        "subject_id": "user",
        "experiment_arm": "arm",
    }
    return bp, mapping


def test_parquet_with_names_arms_and_unix_timestamps(tmp_path: Path) -> None:
    bp, mapping = _toy(tmp_path)
    df = pl.DataFrame(
        {
            "ts": [1_700_000_000_000, 1_700_000_001_000, 1_700_000_002_500],
            "act": ["send", "hold", "send"],
            "p": [0.5, 0.5, 0.9],
            "s": [0.25, float("nan"), None],
            "v": [True, False, None],
            "seg": ["007", "b", "007"],
            "c": [1, 0, 0],
            "r": [0.0, 2.5, None],
            "user": ["u1", "u2", "u3"],
            "arm": ["treat", "control", None],
        }
    )
    path = tmp_path / "logged.parquet"
    df.write_parquet(path)
    home = tmp_path / "home"
    report = import_logs(home, "toy_offers", bp, mapping, [path])
    assert report.observations == {"click": 1, "revenue": 2}

    dec = read_decisions(home, "toy_offers")
    assert dec.get_column("subject_id").to_list() == ["u1", "u2", "u3"]
    assert dec.get_column("action").to_list() == ["send", "hold", "send"]
    assert dec.get_column("action_index").to_list() == [1, 0, 1]
    assert dec.get_column("experiment_arm").to_list() == ["treat", "control", None]
    assert dec.get_column("timestamp").dt.epoch("ms").to_list() == df.get_column("ts").to_list()
    feats = [json.loads(s) for s in dec.get_column("features")]
    assert feats == [
        {"score": 0.25, "vip": True, "segment": "007"},
        {"score": None, "vip": False, "segment": "b"},  # NaN is missing
        {"score": None, "vip": False, "segment": "007"},  # missing takes the default
    ]

    obs = read_observations(home, "toy_offers").sort("name", "timestamp")
    # binary 0s give no observation; a real 0 does; an empty cell gives none
    assert obs.select("name", "value").rows() == [("click", 1.0), ("revenue", 0.0), ("revenue", 2.5)]
    click = obs.filter(pl.col("name") == "click").join(dec, on="decision_id", suffix="_d")
    delay = (click.get_column("timestamp") - click.get_column("timestamp_d")).dt.total_microseconds()
    assert 0 < delay[0] < 0.0001 * 3600e6  # inside a window shorter than a second


def test_csv_keeps_category_text_and_checks_names_and_arms(tmp_path: Path) -> None:
    bp, mapping = _toy(tmp_path)
    path = tmp_path / "logged.csv"
    path.write_text(
        "ts,act,p,s,v,seg,c,r,user,arm\n"
        "1700000000000,send,0.5,1.5,true,007,1,0,u1,treat\n"
        "1700000001000,hold,0.5,,0,b,0,1,u2,\n"
    )
    home = tmp_path / "home"
    import_logs(home, "toy_offers", bp, mapping, [path])
    feats = [json.loads(s) for s in read_decisions(home, "toy_offers").get_column("features")]
    assert feats[0] == {"score": 1.5, "vip": True, "segment": "007"}
    assert feats[1] == {"score": None, "vip": False, "segment": "b"}

    def fails(text: str, **changes: Any) -> LogImportError:
        p = tmp_path / "bad.csv"
        p.write_text("ts,act,p,s,v,seg,c,r,user,arm\n" + text)
        with pytest.raises(LogImportError) as ei:
            import_logs(tmp_path / "home2", "toy_offers", bp, mapping | changes, [p])
        return ei.value

    e = fails("1700000000000,skip,0.5,1,true,b,1,0,u1,treat\n")
    assert e.field == "mapping.action" and "'skip' is not an action" in str(e)
    e = fails("1700000000000,send,0.5,1,true,b,1,0,u1,both\n")
    assert e.field == "mapping.experiment_arm" and "'both' is not an experiment arm" in str(e)
    e = fails("1700000000000,send,0.5,1,maybe,b,1,0,u1,treat\n")
    assert e.field == "mapping.features.vip" and "expected a boolean" in str(e)
    e = fails("1700000000000,send,0.5,1,true,b,1,0,,treat\n")
    assert e.field == "mapping.subject_id" and e.row == 1
    e = fails("1700000000000,send,0.5,1,true,b,1,0,u1,treat\n", timestamp_format=None)
    assert e.field == "mapping.timestamp_format" and "unix_ms" in str(e)
    e = fails("1700000000000,send,0.5,1,true,b,1,0,u1,treat\n", timestamp_format="unix_s")
    assert e.field == "mapping.timestamp" and "after 3000" in str(e)


def test_experiment_arm_needs_an_experiment(tmp_path: Path) -> None:
    e = _fails(tmp_path, [_small_csv(tmp_path)], _mapping(experiment_arm="position"))
    assert e.field == "mapping.experiment_arm" and "no experiment" in str(e)


def test_timestamp_format(tmp_path: Path) -> None:
    small = _small_csv(tmp_path, rows=3)
    home = tmp_path / "first"
    import_logs(home, UC, BLUEPRINT, _mapping(timestamp_format="%Y-%m-%d %H:%M:%S%.f%:z"), [small])
    ts = read_decisions(home, UC).get_column("timestamp").to_list()
    assert ts == _csv_rows(small).get_column("timestamp").to_list()
    other = _small_csv(tmp_path, "other.csv", rows=4)
    e = _fails(tmp_path, [other], _mapping(timestamp_format="%d/%m/%Y"))
    assert e.field == "mapping.timestamp" and "format '%d/%m/%Y'" in str(e)


# -- the command line ----------------------------------------------------------------------
def _looper() -> list[str]:
    exe = Path(sys.executable).parent / "looper"
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "looper_pipelines.cli.main"]


def test_cli_import_end_to_end(tmp_path: Path) -> None:
    home = tmp_path / "home"
    cmd = [*_looper(), "logs", "import", "--home", str(home), "--use-case", UC,
           "--blueprint", str(BLUEPRINT), "--mapping", str(MAPPING), str(BTS)]
    done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "imported 10000 decisions" in done.stdout
    assert read_decisions(home, UC).height == 10_000

    bad = tmp_path / "mapping.yaml"
    bad.write_text(MAPPING.read_text().replace("propensity: propensity_score", "propensity: pscore"))
    cmd_bad = [*_looper(), "logs", "import", "--home", str(tmp_path / "home2"), "--use-case", UC,
               "--blueprint", str(BLUEPRINT), "--mapping", str(bad), str(BTS)]
    done = subprocess.run(cmd_bad, capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("looper: error: mapping.propensity: column 'pscore' not found in ")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_cli_refusals_and_compact(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home = tmp_path / "home"
    small = _small_csv(tmp_path, rows=50)
    args = ["logs", "import", "--home", str(home), "--use-case", UC,
            "--blueprint", str(BLUEPRINT), "--mapping", str(MAPPING), str(small)]
    assert main(args) == 0
    capsys.readouterr()
    assert main(args) == 2
    assert "already imported" in capsys.readouterr().err
    assert main([*args[:-1], str(tmp_path / "nope.csv")]) == 2
    assert "does not exist" in capsys.readouterr().err
    wrong = [*args]
    wrong[wrong.index(UC)] = "something_else"
    assert main(wrong) == 2
    assert "the blueprint's name must be the use case's" in capsys.readouterr().err

    before = read_decisions(home, UC)
    assert main(["logs", "compact", "--home", str(home)]) == 0
    out = capsys.readouterr().out
    assert "compacted: segments_compacted=" in out
    after = read_decisions(home, UC)
    assert after.height == before.height == 50
    assert list((home / "logs" / "decisions").glob(f"use_case={UC}/date=*/*.parquet"))
    assert main(["logs", "compact", "--home", str(home), "--use-case", "Bad-Name"]) == 2


def test_float_reward_values_are_kept(tmp_path: Path) -> None:
    # real-valued rewards are logged as given, zeros included
    bp, mapping = _toy(tmp_path)
    path = tmp_path / "r.csv"
    path.write_text("ts,act,p,s,v,seg,c,r,user,arm\n1700000000000,send,1,,,b,0,-0.5,u1,\n")
    home = tmp_path / "home"
    import_logs(home, "toy_offers", bp, mapping, [path])
    obs = read_observations(home, "toy_offers")
    assert obs.select("name", "value").rows() == [("revenue", -0.5)]
    assert math.isclose(read_decisions(home, "toy_offers").get_column("propensity")[0], 1.0)


# -- own decision ids, reward timestamps and observation files -----------------------------
T0_MS = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
DAY_MS = 86_400_000
OWN = {"decision_id": "did", "reward_timestamps": {"click": "c_at", "revenue": "r_at"}}
EVENTS = {"decision_id": "decision", "name": "event", "value": "amount", "timestamp": "at",
          "timestamp_format": "%Y-%m-%d %H:%M:%S%.f"}


def _iso(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _toy_frame(ids: list[str] | None = None) -> pl.DataFrame:
    """Four decisions of toy_offers with their own ids and the times of their rewards (all
    text, as read from a CSV): a click 2 s after decision 1; revenue 10 days after decision 1
    and 1 hour after decision 4; a real 0 revenue (an observation) 5 s after decision 3."""
    ms = [T0_MS + i * 1000 for i in range(4)]
    cols: dict[str, list[str | None]] = {
        "ts": [str(t) for t in ms],
        "did": ids or ["ext-a", "ext-b", "007", "ext-d"],
        "act": ["send", "hold", "send", "hold"],
        "p": ["0.5", "0.5", "0.9", "0.5"],
        "s": ["0.25", "", "1", "2"],
        "v": ["true", "false", "true", "false"],
        "seg": ["007", "b", "b", "007"],
        "c": ["1", "0", "0", ""],
        "c_at": [str(ms[0] + 2000), "", "", ""],
        "r": ["2.5", "", "0", "1"],
        "r_at": [str(ms[0] + 10 * DAY_MS), "", str(ms[2] + 5000), str(ms[3] + 3_600_000)],
        "user": ["u1", "u2", "u3", "u4"],
        "arm": ["", "", "", ""],
    }
    return pl.DataFrame(cols, schema=dict.fromkeys(cols, pl.Utf8))


def _toy_csv(tmp_path: Path, name: str = "toy.csv", ids: list[str] | None = None,
             **edits: tuple[int, str | None]) -> Path:
    df = _toy_frame(ids)
    for col, (i, value) in edits.items():
        vals = df.get_column(col).to_list()
        vals[i] = value
        df = df.with_columns(pl.Series(col, vals, dtype=pl.Utf8))
    path = tmp_path / name
    df.write_csv(path)
    return path


def _events_csv(tmp_path: Path, rows: list[tuple[str, str, str, int]], name: str = "events.csv") -> Path:
    """An observation file: (decision id, label, value, time in ms) per row."""
    path = tmp_path / name
    pl.DataFrame(
        {
            "decision": [r[0] for r in rows],
            "event": [r[1] for r in rows],
            "amount": [r[2] for r in rows],
            "at": [_iso(r[3]) for r in rows],
        }
    ).write_csv(path)
    return path


def _own_mapping(tmp_path: Path, **changes: Any) -> tuple[Path, dict[str, Any]]:
    bp, mapping = _toy(tmp_path)
    mapping = mapping | OWN | {"observations": dict(EVENTS)}
    for k, v in changes.items():
        if v is None:
            mapping.pop(k, None)
        else:
            mapping[k] = v
    return bp, mapping


def _toy_fails(home: Path, bp: Path, mapping: Any, files: list[Path], observation_files: Sequence[Path] = (),
               use_case: str = "toy_offers") -> LogImportError:
    """The import fails, and nothing at all was written."""
    with pytest.raises(LogImportError) as ei:
        import_logs(home, use_case, bp, mapping, files, observation_files=observation_files)
    assert read_decisions(home, use_case).height == 0
    assert read_observations(home, use_case).height == 0
    assert read_ledger(home) == []
    assert not (home / "blueprints" / f"{use_case}.yaml").exists()
    return ei.value


def test_own_decision_ids_and_reward_timestamps_are_kept(tmp_path: Path) -> None:
    bp, mapping = _own_mapping(tmp_path)
    path = _toy_csv(tmp_path)
    home = tmp_path / "home"
    report = import_logs(home, "toy_offers", bp, mapping, [path])
    assert report.observations == {"click": 1, "revenue": 3}

    dec = read_decisions(home, "toy_offers").sort("timestamp")
    assert dec.get_column("decision_id").to_list() == ["ext-a", "ext-b", "007", "ext-d"]  # zeros kept
    assert dec.get_column("subject_id").to_list() == ["u1", "u2", "u3", "u4"]

    obs = read_observations(home, "toy_offers")
    got = sorted(
        (r["decision_id"], r["name"], r["value"], r["timestamp"].timestamp() * 1000)
        for r in obs.iter_rows(named=True)
    )
    assert got == sorted([
        ("ext-a", "click", 1.0, T0_MS + 2000),
        ("ext-a", "revenue", 2.5, T0_MS + 10 * DAY_MS),  # observed ten days later: stamped then
        ("007", "revenue", 0.0, T0_MS + 2000 + 5000),
        ("ext-d", "revenue", 1.0, T0_MS + 3000 + 3_600_000),
    ])
    sha = read_ledger(home)[0]["sha256"]
    assert set(obs.get_column("observation_id")) == {
        observation_id("toy_offers", sha, 1, "click"), observation_id("toy_offers", sha, 1, "revenue"),
        observation_id("toy_offers", sha, 3, "revenue"), observation_id("toy_offers", sha, 4, "revenue"),
    }


def test_reward_timestamps_only_for_some_labels(tmp_path: Path) -> None:
    # a label without a timestamp column keeps the fixed delay after the decision
    bp, mapping = _own_mapping(tmp_path, reward_timestamps={"revenue": "r_at"}, observations=None)
    home = tmp_path / "home"
    import_logs(home, "toy_offers", bp, mapping, [_toy_csv(tmp_path)])
    obs = read_observations(home, "toy_offers")
    click = obs.filter(pl.col("name") == "click").join(read_decisions(home, "toy_offers"), on="decision_id",
                                                       suffix="_d")
    delay = (click.get_column("timestamp") - click.get_column("timestamp_d")).dt.total_microseconds()
    assert delay.to_list() == [int(0.0001 * 3600e6) // 2]
    revenue = obs.filter(pl.col("name") == "revenue").sort("timestamp")
    assert revenue.get_column("timestamp").dt.epoch("ms").to_list()[-1] == T0_MS + 10 * DAY_MS


@pytest.mark.parametrize(
    ("ids", "row", "problem"),
    [
        (["a", "b", "a", "d"], 3, "decision id 'a' is repeated: it is also in row 1"),
        (["a", "b", "", "d"], 3, "missing decision id (empty cell)"),
        (["a", "b", "   ", "d"], 3, "missing decision id (empty cell)"),
        (["a", "x" * 201, "c", "d"], 2, "(201 characters) is longer than 200 characters"),
        (["a", "b", "c", "d\x07"], 4, "contains a control character"),
    ],
)
def test_bad_own_decision_ids_are_refused(tmp_path: Path, ids: list[str], row: int, problem: str) -> None:
    bp, mapping = _own_mapping(tmp_path, observations=None)
    path = _toy_csv(tmp_path, ids=ids)
    e = _toy_fails(tmp_path / "home", bp, mapping, [path])
    assert e.field == "mapping.decision_id", str(e)
    assert (e.file, e.row, e.column) == (str(path), row, "did"), str(e)
    assert f"{path} row {row}, column 'did'" in str(e)
    assert problem in str(e)
    assert len(str(e)) < 500


def test_own_decision_ids_unique_across_files_and_the_log(tmp_path: Path) -> None:
    bp, mapping = _own_mapping(tmp_path, observations=None)
    first = _toy_csv(tmp_path, "first.csv")
    second = _toy_csv(tmp_path, "second.csv", ids=["n1", "n2", "ext-b", "n4"])
    e = _toy_fails(tmp_path / "home", bp, mapping, [first, second])
    assert e.field == "mapping.decision_id" and (e.file, e.row) == (str(second), 3)
    assert f"decision id 'ext-b' is also in {first} row 2" in str(e)

    home = tmp_path / "home"
    import_logs(home, "toy_offers", bp, mapping, [first])
    with pytest.raises(LogImportError) as ei:
        import_logs(home, "toy_offers", bp, mapping, [second])
    assert ei.value.field == "mapping.decision_id" and ei.value.row == 3
    assert "decision id 'ext-b' is already in the decision log of use case 'toy_offers'" in str(ei.value)
    assert "--force" in str(ei.value)
    assert read_decisions(home, "toy_offers").height == 4
    assert len(read_ledger(home)) == 1
    # forced: logged again, under the same ids
    import_logs(home, "toy_offers", bp, mapping, [second], force=True)
    assert read_decisions(home, "toy_offers").get_column("decision_id").to_list().count("ext-b") == 2


@pytest.mark.parametrize(
    ("edits", "row", "column", "problem"),
    [
        ({"r_at": (0, str(T0_MS - 1))}, 1, "r_at", "reward timestamp 2023-11-14T22:13:19.999000+00:00 is "
         "before the timestamp of its decision (2023-11-14T22:13:20+00:00)"),
        ({"c_at": (0, str(T0_MS - 60_000))}, 1, "c_at", "is before the timestamp of its decision"),
        ({"r_at": (2, "")}, 3, "r_at", "missing reward timestamp (empty cell) for the reward 0.0 of label "
         "'revenue' in column 'r'"),
        ({"c_at": (0, None)}, 1, "c_at", "missing reward timestamp"),
        ({"r_at": (3, "soon")}, 4, "r_at", "'soon' is not a number"),
    ],
)
def test_bad_reward_timestamps_are_refused(
    tmp_path: Path, edits: dict[str, Any], row: int, column: str, problem: str
) -> None:
    bp, mapping = _own_mapping(tmp_path, observations=None)
    good = _toy_csv(tmp_path, "good.csv", ids=["g1", "g2", "g3", "g4"])
    bad = _toy_csv(tmp_path, "bad.csv", **edits)
    e = _toy_fails(tmp_path / "home", bp, mapping, [good, bad])
    label = "revenue" if column == "r_at" else "click"
    assert e.field == f"mapping.reward_timestamps.{label}", str(e)
    assert (e.file, e.row, e.column) == (str(bad), row, column), str(e)
    assert problem in str(e)


def test_reward_timestamps_in_text_format(tmp_path: Path) -> None:
    # parsed as the decision timestamp is, with the same timestamp_format
    bp, mapping = _own_mapping(tmp_path, observations=None, timestamp_format="%Y-%m-%d %H:%M:%S%.f",
                               reward_timestamps={"revenue": "r_at"})
    df = _toy_frame()
    df = df.with_columns(
        pl.Series(c, [_iso(int(v)) if v else "" for v in df.get_column(c)], dtype=pl.Utf8)
        for c in ("ts", "r_at")
    )
    path = tmp_path / "text.csv"
    df.write_csv(path)
    home = tmp_path / "home"
    import_logs(home, "toy_offers", bp, mapping, [path])
    revenue = read_observations(home, "toy_offers").filter(pl.col("name") == "revenue")
    assert sorted(revenue.get_column("timestamp").dt.epoch("ms").to_list()) == [
        T0_MS + 2000 + 5000, T0_MS + 3000 + 3_600_000, T0_MS + 10 * DAY_MS]


def test_mapping_checks_of_the_new_fields(tmp_path: Path) -> None:
    bp, mapping = _own_mapping(tmp_path)
    path = _toy_csv(tmp_path)
    home = tmp_path / "home"
    e = _toy_fails(home, bp, {k: v for k, v in mapping.items() if k != "decision_id"}, [path])
    assert e.field == "mapping.decision_id" and "required with mapping.observations" in str(e)
    e = _toy_fails(home, bp, mapping | {"reward_timestamps": {"conversion": "c_at"}}, [path])
    assert e.field == "mapping.reward_timestamps.conversion" and "not a label" in str(e)
    e = _toy_fails(home, bp, mapping | {"rewards": {"click": "c"}}, [path])
    assert e.field == "mapping.reward_timestamps.revenue" and "no reward column" in str(e)
    e = _toy_fails(home, bp, mapping | {"observations": {**EVENTS, "colour": "x"}}, [path])
    assert e.field == "mapping.observations.colour"
    e = _toy_fails(home, bp, mapping | {"observations": {**EVENTS, "timestamp_format": "later"}}, [path])
    assert e.field == "mapping.observations.timestamp_format"
    e = _toy_fails(home, bp, mapping | {"observations": {k: v for k, v in EVENTS.items() if k != "value"}},
                   [path])
    assert e.field == "mapping.observations.value"
    e = _toy_fails(home, bp, mapping | {"decision_id": ""}, [path])
    assert e.field == "mapping.decision_id"
    events = _events_csv(tmp_path, [("ext-a", "click", "1", T0_MS + 10)])
    no_section = {k: v for k, v in mapping.items() if k != "observations"}
    e = _toy_fails(home, bp, no_section, [path], [events])
    assert e.field == "mapping.observations" and "no observations section" in str(e)
    e = _toy_fails(home, bp, mapping, [path], [events, events])
    assert "same content" in str(e)
    e = _toy_fails(home, bp, mapping, [path], [tmp_path / "absent.csv"])
    assert "does not exist" in str(e)


# -- observation files ---------------------------------------------------------------------
def test_observation_file_is_joined_by_decision_id(tmp_path: Path) -> None:
    bp, mapping = _own_mapping(tmp_path, reward_timestamps=None, rewards={"click": "c"})
    path = _toy_csv(tmp_path)
    events = _events_csv(tmp_path, [
        ("ext-b", "revenue", "4.5", T0_MS + 1000 + 10 * DAY_MS),
        ("ext-b", "revenue", "0", T0_MS + 1000 + 60_000),
        ("007", "click", "1", T0_MS + 2000),  # at the decision's own time: accepted
        ("ext-d", "click", "0", T0_MS + 3000 + 100),  # logged as given, zeros included
    ])
    home = tmp_path / "home"
    report = import_logs(home, "toy_offers", bp, mapping, [path], observation_files=[events])
    assert report.observations == {"click": 1 + 2, "revenue": 2}
    assert [f.path for f in report.observation_files] == [str(events)]
    assert report.observation_files[0].observations == {"click": 2, "revenue": 2}
    assert report.observation_files[0].decisions == 0
    assert f"{events}: 4 observations" in report.summary()
    assert json.loads(json.dumps(report.to_dict()))["observation_files"][0]["rows"] == 4

    dec = read_decisions(home, "toy_offers")
    obs = read_observations(home, "toy_offers")
    sha = _sha(events)
    from_file = obs.filter(pl.col("observation_id").is_in(
        [event_observation_id("toy_offers", sha, r) for r in range(1, 5)]))
    assert from_file.height == 4
    joined = from_file.join(dec, on="decision_id", how="inner", suffix="_d")
    assert joined.height == 4  # every observation joins its decision
    got = sorted((r["subject_id"], r["name"], r["value"], r["timestamp"].timestamp() * 1000)
                 for r in joined.iter_rows(named=True))
    assert got == sorted([
        ("u2", "revenue", 4.5, T0_MS + 1000 + 10 * DAY_MS),
        ("u2", "revenue", 0.0, T0_MS + 1000 + 60_000),
        ("u3", "click", 1.0, T0_MS + 2000),
        ("u4", "click", 0.0, T0_MS + 3100),
    ])
    ledger = read_ledger(home)
    assert [(e["kind"], e["status"]) for e in ledger] == [("decisions", "complete"), ("observations", "complete")]
    assert ledger[1]["sha256"] == sha and ledger[1]["observations"] == {"click": 2, "revenue": 2}


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_observation_file_in_parquet_with_own_observation_ids(tmp_path: Path) -> None:
    bp, mapping = _own_mapping(tmp_path)
    mapping["observations"] = {**EVENTS, "observation_id": "oid", "timestamp_format": None}
    path = _toy_csv(tmp_path)
    events = tmp_path / "events.parquet"
    pl.DataFrame({
        "decision": ["ext-a", "ext-a", "ext-d"],
        "event": ["revenue", "revenue", "click"],
        "amount": [1.25, 1.25, 1.0],
        "at": [datetime(2023, 11, 20, tzinfo=UTC), datetime(2023, 11, 20, tzinfo=UTC),
               datetime(2023, 11, 15, tzinfo=UTC)],
        "oid": ["o-1", "o-1", "o-2"],  # a retried event: one observation
    }).write_parquet(events)
    home = tmp_path / "home"
    import_logs(home, "toy_offers", bp, mapping, [path], observation_files=[events])
    obs = read_observations(home, "toy_offers").filter(pl.col("observation_id").is_in(["o-1", "o-2"]))
    assert sorted(obs.select("observation_id", "decision_id", "name", "value").rows()) == [
        ("o-1", "ext-a", "revenue", 1.25), ("o-2", "ext-d", "click", 1.0)]


@pytest.mark.parametrize(
    ("row", "column", "problem"),
    [
        (("nope", "click", "1", T0_MS + 5000), "decision",
         "decision id 'nope' is not among the decisions of this import"),
        (("", "click", "1", T0_MS + 5000), "decision", "missing decision id (empty cell)"),
        (("ext-b", "purchase", "1", T0_MS + 5000), "event", "'purchase' is not a label of blueprint 'toy_offers'"),
        (("ext-b", "click", "2", T0_MS + 5000), "amount", "label 'click' is binary: expected 0 or 1, got 2.0"),
        (("ext-b", "revenue", "inf", T0_MS + 5000), "amount", "value inf is not finite"),
        (("ext-b", "revenue", "", T0_MS + 5000), "amount", "missing value (empty cell)"),
        (("ext-b", "revenue", "1", T0_MS + 500), "at", "observation timestamp 2023-11-14T22:13:20.500000+00:00 "
         "is before the timestamp of its decision 'ext-b' (2023-11-14T22:13:21+00:00)"),
    ],
)
def test_bad_observation_rows_are_refused(
    tmp_path: Path, row: tuple[str, str, str, int], column: str, problem: str
) -> None:
    bp, mapping = _own_mapping(tmp_path)
    path = _toy_csv(tmp_path)
    good = ("ext-a", "revenue", "3", T0_MS + DAY_MS)
    events = _events_csv(tmp_path, [good, good, row])
    e = _toy_fails(tmp_path / "home", bp, mapping, [path], [events])
    fields = {"decision": "decision_id", "event": "name", "amount": "value", "at": "timestamp"}
    assert e.field == f"mapping.observations.{fields[column]}", str(e)
    assert (e.file, e.row, e.column) == (str(events), 3, column), str(e)
    assert problem in str(e)


def test_observations_of_decisions_already_in_the_log_are_refused(tmp_path: Path) -> None:
    # only the decisions imported with them count: an observation file is not a log_observation
    bp, mapping = _own_mapping(tmp_path)
    home = tmp_path / "home"
    import_logs(home, "toy_offers", bp, mapping, [_toy_csv(tmp_path)])
    other = _toy_csv(tmp_path, "other.csv", ids=["n1", "n2", "n3", "n4"])
    events = _events_csv(tmp_path, [("ext-a", "click", "1", T0_MS + 5000)])
    with pytest.raises(LogImportError, match="'ext-a' is not among the decisions of this import") as ei:
        import_logs(home, "toy_offers", bp, mapping, [other], observation_files=[events])
    assert ei.value.row == 1
    assert read_decisions(home, "toy_offers").height == 4
    assert len(read_ledger(home)) == 1


def test_reimporting_an_observation_file_is_refused_without_force(tmp_path: Path) -> None:
    bp, mapping = _own_mapping(tmp_path)
    home = tmp_path / "home"
    first = _toy_csv(tmp_path, "first.csv")
    events = _events_csv(tmp_path, [("ext-a", "revenue", "3", T0_MS + DAY_MS)])
    import_logs(home, "toy_offers", bp, mapping, [first], observation_files=[events])
    n_obs = read_observations(home, "toy_offers").height

    second = _toy_csv(tmp_path, "second.csv", ids=["n1", "n2", "n3", "n4"])
    with pytest.raises(LogImportError) as ei:
        import_logs(home, "toy_offers", bp, mapping, [second], observation_files=[events])
    assert ei.value.field == str(events)
    assert "already imported into use case 'toy_offers'" in str(ei.value)
    assert "1 observations" in str(ei.value) and "--force" in str(ei.value)
    copy = tmp_path / "copy.csv"
    shutil.copy(events, copy)
    with pytest.raises(LogImportError, match="already imported"):
        import_logs(home, "toy_offers", bp, mapping, [second], observation_files=[copy])
    assert read_decisions(home, "toy_offers").height == 4
    assert len(read_ledger(home)) == 2

    # forced with its decisions: the same observation ids, so nothing is counted twice
    import_logs(home, "toy_offers", bp, mapping, [first], observation_files=[events], force=True)
    assert read_observations(home, "toy_offers").height == n_obs
    assert read_decisions(home, "toy_offers").height == 8


# -- bounded error messages ----------------------------------------------------------------
HUGE = "x" * 2_000_000


@pytest.mark.parametrize(
    ("edits", "field"),
    [
        ({"p": (1, HUGE)}, "mapping.propensity"),
        ({"act": (1, HUGE)}, "mapping.action"),
        ({"seg": (1, HUGE)}, "mapping.features.segment"),
        ({"s": (1, HUGE)}, "mapping.features.score"),
        ({"r": (1, HUGE)}, "mapping.rewards.revenue"),
        ({"did": (1, HUGE)}, "mapping.decision_id"),
        ({"arm": (1, HUGE)}, "mapping.experiment_arm"),
        ({"ts": (1, HUGE)}, "mapping.timestamp"),
        ({"r_at": (1, HUGE)}, "mapping.reward_timestamps.revenue"),
    ],
)
def test_errors_quoting_a_huge_cell_stay_short(tmp_path: Path, edits: dict[str, Any], field: str) -> None:
    bp, mapping = _own_mapping(tmp_path, observations=None)
    path = _toy_csv(tmp_path, **edits)
    e = _toy_fails(tmp_path / "home", bp, mapping, [path])
    assert e.field == field, str(e)[:300]
    assert e.row == 2, str(e)[:300]
    assert len(str(e)) < 500, str(e)[:600]
    assert "xxxxxxxx..." in str(e) or "xxxxxxxx'..." in str(e), str(e)


@pytest.mark.parametrize("column", ["decision", "event", "amount", "at"])
def test_observation_file_errors_quoting_a_huge_cell_stay_short(tmp_path: Path, column: str) -> None:
    bp, mapping = _own_mapping(tmp_path)
    path = _toy_csv(tmp_path)
    row = {"decision": "ext-a", "event": "revenue", "amount": "1", "at": _iso(T0_MS + 5000)}
    row[column] = HUGE
    events = tmp_path / "events.csv"
    pl.DataFrame({k: [v] for k, v in row.items()}).write_csv(events)
    e = _toy_fails(tmp_path / "home", bp, mapping, [path], [events])
    assert e.row == 1 and e.column == column, str(e)[:300]
    assert len(str(e)) < 500, str(e)[:600]


def test_a_huge_column_name_is_not_quoted_whole(tmp_path: Path) -> None:
    bp, mapping = _own_mapping(tmp_path, observations=None)
    df = _toy_frame().rename({"user": HUGE[:100_000]})
    path = tmp_path / "wide.csv"
    df.write_csv(path)
    e = _toy_fails(tmp_path / "home", bp, mapping, [path])
    assert e.field == "mapping.subject_id" and len(str(e)) < 3000


# -- the command line, in a subprocess -----------------------------------------------------
def test_cli_observation_files_and_a_bad_mapping(tmp_path: Path) -> None:
    bp, mapping = _own_mapping(tmp_path)
    path = _toy_csv(tmp_path)
    events = _events_csv(tmp_path, [("ext-a", "revenue", "3", T0_MS + DAY_MS)])
    good = tmp_path / "mapping.yaml"
    good.write_text(yaml.safe_dump(mapping))
    home = tmp_path / "home"
    base = [sys.executable, "-m", "looper_pipelines.cli.main", "logs", "import", "--home", str(home),
            "--use-case", "toy_offers", "--blueprint", str(bp)]
    done = subprocess.run([*base, "--mapping", str(good), str(path), "--observations", str(events)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 0, done.stderr
    assert f"{events}: 1 observations" in done.stdout
    assert read_decisions(home, "toy_offers").get_column("decision_id").to_list() == [
        "ext-a", "ext-b", "007", "ext-d"]

    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({k: v for k, v in mapping.items() if k != "decision_id"}))
    done = subprocess.run([*base, "--mapping", str(bad), str(path), "--observations", str(events)],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2
    assert done.stderr.startswith("looper: error: mapping.decision_id: is required with mapping.observations")
    assert done.stderr.count("\n") == 1 and done.stderr.endswith("\n")
    assert "Traceback" not in done.stderr
    assert done.stdout == ""


def test_own_decision_ids_from_parquet_numbers_and_at_the_length_limit(tmp_path: Path) -> None:
    bp, mapping = _own_mapping(tmp_path, observations=None, reward_timestamps=None)
    df = _toy_frame().with_columns(pl.col(pl.Utf8).replace("", None)).with_columns(
        pl.col("ts", "c").cast(pl.Int64), pl.col("p", "s", "r").cast(pl.Float64), pl.col("v") == "true",
        pl.Series("did", [10, 11, 12, 13], dtype=pl.Int64),
    )
    path = tmp_path / "ints.parquet"
    df.write_parquet(path)
    home = tmp_path / "home"
    import_logs(home, "toy_offers", bp, mapping, [path])
    assert read_decisions(home, "toy_offers").get_column("decision_id").to_list() == ["10", "11", "12", "13"]

    longest = ["y" * 200, "b", "c", "d"]
    import_logs(home / "other", "toy_offers", bp, mapping, [_toy_csv(tmp_path, ids=longest)])
    assert read_decisions(home / "other", "toy_offers").get_column("decision_id")[0] == "y" * 200
