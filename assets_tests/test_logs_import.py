"""``looper logs import``: the Open Bandit sample end to end, idempotency, and bad input."""

from __future__ import annotations

import functools
import json
import math
import shutil
import subprocess
import sys
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
