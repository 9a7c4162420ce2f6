"""Compiled serving models: parity with LightGBM, integrity checks, threads, GTIL fallback.

Real shared libraries are compiled into tmp folders (small models, a few seconds each).
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import struct
import threading
from pathlib import Path
from typing import Any

import lightgbm as lgb
import numpy as np
import pytest

from assets_tests.conftest import run_python
from looper_pipelines.serving import compiled as compiled_mod
from looper_pipelines.serving._shim import (
    parse_predict,
    reads_missing_word,
    rewrite_tree_code,
    shim_source,
)
from looper_pipelines.serving.branch_free import branch_free_source
from looper_pipelines.serving.compiled import (
    CompiledModel,
    ParityError,
    check_parity,
    compile_lightgbm,
)
from looper_pipelines.serving.manifest import (
    MANIFEST_NAME,
    ArtifactError,
    IntegrityError,
    finalize_manifest,
    sha256_file,
)

N_FEATURE = 8
CAT = 3  # categorical feature index (integer codes 0..9)
NEVER_MISSING = 7  # no NaN at training time; NaN at prediction time
FEATURES = [f"f{i}" for i in range(N_FEATURE)]
ATOL = 1e-6


def _train_data(n: int = 2500, seed: int = 0) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, N_FEATURE))
    X[:, CAT] = rng.integers(0, 10, size=n)
    signal = X[:, 0] + 0.8 * np.isin(X[:, CAT], [2, 5, 7]) + 0.5 * np.sin(2 * X[:, 1])
    labels = {
        "binary": (signal + 0.3 * rng.normal(size=n) > 0.4).astype(int),
        "regression": 2.0 * signal + X[:, 2] ** 2,
        "multiclass": np.digitize(signal + 0.2 * rng.normal(size=n), [0.0, 0.9]),
    }
    holes = rng.random(X.shape) < 0.1
    holes[:, NEVER_MISSING] = False
    X[holes] = np.nan
    return X, labels


def _eval_rows(n: int = 600, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    X = rng.normal(scale=1.3, size=(n, N_FEATURE))
    X[:, CAT] = rng.integers(-1, 13, size=n)  # includes a negative and unseen categories
    X[rng.random(X.shape) < 0.15] = np.nan
    # edge values: non-integer and huge categories, infinities, exact zero
    X[0, CAT], X[1, CAT], X[2, CAT], X[3, CAT] = 2.5, 1e12, -3.0, np.nan
    X[4, 0], X[5, 0], X[6, 0] = np.inf, -np.inf, 0.0
    X[7, :] = np.nan
    return X


PARAMS: dict[str, dict[str, Any]] = {
    "binary": {"objective": "binary"},
    "regression": {"objective": "regression"},
    "multiclass": {"objective": "multiclass", "num_class": 3},
}
ROUNDS = {"binary": 30, "regression": 30, "multiclass": 12}


@pytest.fixture(scope="module")
def boosters() -> dict[str, lgb.Booster]:
    X, labels = _train_data()
    out = {}
    for task, params in PARAMS.items():
        ds = lgb.Dataset(X, labels[task], feature_name=FEATURES, categorical_feature=[CAT])
        common = {"num_leaves": 15, "verbose": -1, "min_data_per_group": 5, "cat_smooth": 1.0}
        out[task] = lgb.train({**common, **params}, ds, num_boost_round=ROUNDS[task])
    return out


@pytest.fixture(scope="module")
def artifacts(
    boosters: dict[str, lgb.Booster], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("artifacts")
    return {
        task: compile_lightgbm(
            booster,
            root / task,
            feature_names=FEATURES,
            metadata={"model_version": f"{task}-1", "blueprint_version": "bp1"},
            # a single translation unit: the blocked batch path degenerates to row by row
            parallel_comp=1 if task == "regression" else 3,
        )
        for task, booster in boosters.items()
    }


@pytest.fixture(scope="module")
def models(artifacts: dict[str, Path]) -> dict[str, CompiledModel]:
    return {task: CompiledModel.load(path) for task, path in artifacts.items()}


def _copy_artifact(src_manifest: Path, dest: Path) -> Path:
    shutil.copytree(src_manifest.parent, dest)
    return dest


# ------------------------------------------------------------------------------ parity


@pytest.mark.parametrize("task", list(PARAMS))
def test_batch_and_single_row_parity(
    task: str, boosters: dict[str, lgb.Booster], models: dict[str, CompiledModel]
) -> None:
    booster, model = boosters[task], models[task]
    assert model.backend == "native"
    X = _eval_rows()
    expected = booster.predict(X)

    got = model.predict(X)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=ATOL)

    singles = np.array([model.predict_one(row) for row in X])
    np.testing.assert_allclose(singles, expected, rtol=0, atol=ATOL)
    lists = np.array([model.predict_one(row.tolist()) for row in X[:50]])
    np.testing.assert_allclose(lists, expected[:50], rtol=0, atol=ATOL)
    tuples = np.array([model.predict_one(tuple(row)) for row in X[:20]])
    np.testing.assert_allclose(tuples, expected[:20], rtol=0, atol=ATOL)

    assert check_parity(model, booster, X, atol=ATOL) <= ATOL
    raw = model.predict(X, raw_score=True)
    np.testing.assert_allclose(raw, booster.predict(X, raw_score=True), rtol=0, atol=ATOL)


def test_output_types(models: dict[str, CompiledModel], boosters: dict[str, lgb.Booster]) -> None:
    row = _eval_rows()[10]
    p = models["binary"].predict_one(row)
    assert isinstance(p, float) and 0.0 < p < 1.0
    assert isinstance(models["regression"].predict_one(row), float)
    probs = models["multiclass"].predict_one(row)
    assert isinstance(probs, np.ndarray) and probs.shape == (3,)
    assert probs.sum() == pytest.approx(1.0)
    # the returned array is a copy, not this thread's buffer
    again = models["multiclass"].predict_one(_eval_rows()[11])
    assert not np.shares_memory(probs, again)
    assert models["multiclass"].num_class == 3 and models["binary"].num_class == 1
    assert models["binary"].num_feature == N_FEATURE


def test_none_means_missing_and_input_shapes(
    models: dict[str, CompiledModel], boosters: dict[str, lgb.Booster]
) -> None:
    model, booster = models["binary"], boosters["binary"]
    row = _eval_rows()[20].copy()
    row[1] = np.nan
    with_none = [None if np.isnan(v) else float(v) for v in row]
    expected = booster.predict(row.reshape(1, -1))[0]
    assert model.predict_one(with_none) == pytest.approx(expected, abs=ATOL)
    assert model.predict_one(row.reshape(1, -1)) == pytest.approx(expected, abs=ATOL)
    assert model.predict_one(row.astype(np.float32).astype(np.float64)) == pytest.approx(
        booster.predict(row.astype(np.float32).astype(np.float64).reshape(1, -1))[0], abs=ATOL
    )
    for bad in (row[:-1], row[:-1].tolist(), [*row.tolist(), 1.0], np.float64(1.0)):
        with pytest.raises(ValueError, match="expected 8 feature values"):
            model.predict_one(bad)
    with pytest.raises(ValueError, match="expected shape"):
        model.predict(np.zeros((3, N_FEATURE + 1)))
    assert model.predict(np.zeros((0, N_FEATURE))).shape == (0,)
    assert models["multiclass"].predict(np.zeros((0, N_FEATURE))).shape == (0, 3)


def test_dataframe_columns_are_reordered(
    models: dict[str, CompiledModel], boosters: dict[str, lgb.Booster]
) -> None:
    pd = pytest.importorskip("pandas")
    X = _eval_rows()[:40]
    df = pd.DataFrame(X, columns=FEATURES)[list(reversed(FEATURES))]
    np.testing.assert_allclose(
        models["regression"].predict(df), boosters["regression"].predict(X), atol=ATOL
    )


def test_batch_threads_agree(models: dict[str, CompiledModel]) -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(20_001, N_FEATURE))
    X[:, CAT] = rng.integers(0, 10, size=len(X))
    X[rng.random(X.shape) < 0.1] = np.nan
    for task in ("multiclass", "regression"):
        model = models[task]
        one_thread = model.predict(X, num_threads=1)
        np.testing.assert_array_equal(one_thread, model.predict(X, num_threads=3))
        singles = np.array([model.predict_one(row) for row in X[-300:]])
        np.testing.assert_array_equal(one_thread[-300:], singles)  # blocked == row by row


def test_check_parity_raises_on_mismatch(
    models: dict[str, CompiledModel], boosters: dict[str, lgb.Booster]
) -> None:
    X = _eval_rows()[:100]
    with pytest.raises(ParityError) as info:
        check_parity(models["binary"], boosters["regression"], X)
    assert info.value.max_abs_diff > ATOL


# ------------------------------------------------------------------------------ artifact


def test_manifest_contents(artifacts: dict[str, Path], boosters: dict[str, lgb.Booster]) -> None:
    path = artifacts["binary"]
    assert path.name == MANIFEST_NAME and path.is_file()
    m = json.loads(path.read_text())
    assert m["backend"] == "native"
    assert m["feature_names"] == FEATURES
    assert m["num_feature"] == N_FEATURE and m["num_class"] == 1
    assert m["task"] == "binary" and m["objective"].startswith("binary")
    assert m["categorical_features"] == [FEATURES[CAT]]
    assert m["num_trees"] == 30
    lib = path.parent / m["library"]["file"]
    assert m["library"]["sha256"] == sha256_file(lib)
    assert m["treelite_model"]["sha256"] == sha256_file(path.parent / "model.tl")
    assert m["versions"]["treelite"] and m["versions"]["tl2cgen"] and m["versions"]["lightgbm"]
    assert m["build"]["compiler"] and m["build"]["python"] and m["build"]["created_at"]
    assert m["build"]["parallel_comp"] == 3
    assert m["library"]["translation_units"] == 3 and m["library"]["batch_block_rows"] > 1
    regression = json.loads(artifacts["regression"].read_text())["library"]
    assert regression["translation_units"] == 1
    assert m["metadata"] == {"model_version": "binary-1", "blueprint_version": "bp1"}
    assert json.loads(artifacts["multiclass"].read_text())["num_class"] == 3
    # the folder holds exactly the artifact: no staging leftovers beside it
    assert sorted(p.name for p in path.parent.iterdir()) == [
        "manifest.json",
        "model.so",
        "model.tl",
    ]
    assert not [p for p in path.parent.parent.iterdir() if p.name.startswith(".")]
    # loading by folder or by manifest path is the same
    assert CompiledModel.load(path.parent).manifest == CompiledModel.load(path).manifest


def test_tampered_library_is_refused(artifacts: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy_artifact(artifacts["binary"], tmp_path / "tampered")
    lib = folder / "model.so"
    data = bytearray(lib.read_bytes())
    data[len(data) // 2] ^= 0x01
    lib.write_bytes(bytes(data))
    with pytest.raises(IntegrityError, match=r"refusing to load .*model\.so.*SHA-256"):
        CompiledModel.load(folder)
    lib.unlink()
    with pytest.raises(ArtifactError, match="missing"):
        CompiledModel.load(folder)


def test_missing_or_altered_manifest_is_refused(artifacts: dict[str, Path], tmp_path: Path) -> None:
    folder = _copy_artifact(artifacts["binary"], tmp_path / "a")
    manifest = json.loads((folder / MANIFEST_NAME).read_text())

    # edited without updating the checksum
    edited = {**manifest, "num_feature": manifest["num_feature"] + 1}
    (folder / MANIFEST_NAME).write_text(json.dumps(edited))
    with pytest.raises(IntegrityError, match="manifest checksum mismatch"):
        CompiledModel.load(folder)

    # re-checksummed, but pointing at a library with another hash
    forged = finalize_manifest({**manifest, "library": {**manifest["library"], "sha256": "0" * 64}})
    (folder / MANIFEST_NAME).write_text(json.dumps(forged))
    with pytest.raises(IntegrityError, match="SHA-256"):
        CompiledModel.load(folder)

    # a file name that escapes the folder
    escape = finalize_manifest({**manifest, "library": {**manifest["library"], "file": "../x.so"}})
    (folder / MANIFEST_NAME).write_text(json.dumps(escape))
    with pytest.raises(ArtifactError, match="unsafe"):
        CompiledModel.load(folder)

    # truncated, then missing
    (folder / MANIFEST_NAME).write_text(json.dumps(manifest)[:100])
    with pytest.raises(ArtifactError, match="not valid JSON"):
        CompiledModel.load(folder)
    (folder / MANIFEST_NAME).unlink()
    with pytest.raises(ArtifactError, match="no manifest"):
        CompiledModel.load(folder)

    # a pinned manifest checksum must match
    with pytest.raises(IntegrityError, match="pinned"):
        CompiledModel.load(artifacts["binary"], expected_manifest_sha256="f" * 64)
    pinned = CompiledModel.load(
        artifacts["binary"], expected_manifest_sha256=manifest["manifest_sha256"]
    )
    assert pinned.num_feature == N_FEATURE


def test_out_dir_must_be_new(boosters: dict[str, lgb.Booster], tmp_path: Path) -> None:
    target = tmp_path / "v1"
    target.mkdir()
    (target / "something").write_text("x")
    with pytest.raises(FileExistsError):
        compile_lightgbm(boosters["binary"], target, backend="gtil")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v1"]
    # an empty folder is fine (it is replaced by the finished artifact)
    empty = tmp_path / "v2"
    empty.mkdir()
    assert compile_lightgbm(boosters["binary"], empty, backend="gtil") == empty / MANIFEST_NAME


def test_feature_names_must_match_training_names(
    boosters: dict[str, lgb.Booster], tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="differ"):
        compile_lightgbm(boosters["binary"], tmp_path / "x", feature_names=FEATURES[::-1])
    with pytest.raises(ValueError, match="has 2 names"):
        compile_lightgbm(boosters["binary"], tmp_path / "x", feature_names=["a", "b"])
    with pytest.raises(TypeError, match="JSON"):
        compile_lightgbm(boosters["binary"], tmp_path / "x", metadata={"when": object()})
    assert not (tmp_path / "x").exists()


def test_predict_layout_is_recognised_strictly() -> None:
    head = "void predict(union Entry* data, int pred_margin, double* result) {\n"
    units = "  unsigned int tmp;\n  predict_unit0(data, result);\n  predict_unit1(data, result);\n"
    tail = (
        "  \n  // Apply base_scores\n  result[0] += 0;\n  result[1] += -1.5e-3;\n"
        "  \n  // Apply postprocessor\n  if (!pred_margin) { postprocess(result); }\n}\n"
    )
    layout = parse_predict(head + units + tail)
    assert layout is not None and layout.num_units == 2
    assert layout.base_scores == ("result[0] += 0;", "result[1] += -1.5e-3;")
    src = shim_source(N_FEATURE, 2, layout)
    assert "predict_unit0, predict_unit1" in src and "result[1] += -1.5e-3;" in src
    # trees inlined in predict, units out of order, or extra statements: row loop only
    inlined = head + "  if (data[0].fvalue <= 1.0) { result[0] += 1.0; }\n" + tail
    assert parse_predict(inlined) is None
    assert parse_predict(head + units.replace("unit1", "unit2") + tail) is None
    assert parse_predict(head + units + "  result[0] /= 2;\n" + tail) is None
    assert "#define LOOPER_NUM_UNITS 0" in shim_source(N_FEATURE, 1, None)


def test_tree_code_rewrite() -> None:
    src = (
        "  if ( LIKELY( !(data[1].missing != -1) || (data[1].fvalue <= (double)0.25) ) ) {\n"
        "    if ( UNLIKELY(  (data[12].missing != -1) && (data[12].fvalue <= (double)-1.5e-3) ) ) {\n"
        "      result[0] += 0.5;\n"
        "    } else {\n"
        "      result[0] += -0.75;\n"
        "    }\n"
        "  } else {\n"
        "    if ( LIKELY(  (data[3].missing != -1) && (1) ) ) {\n"
        "      result[0] += 1;\n"
        "      result[1] += 2;\n"
        "    } else {\n"
        "      result[0] += 3;\n"
        "    }\n"
        "  }\n"
    )
    out = rewrite_tree_code(src)
    assert "!(data[1].fvalue > (double)0.25)" in out  # missing goes left
    assert (
        "{ static const double lp[2] = { -0.75, 0.5 }; "
        "result[0] += lp[!!(  (data[12].fvalue <= (double)-1.5e-3) )]; }" in out
    )
    assert "(data[3].fvalue == data[3].fvalue)" in out  # not a leaf pair: two outputs
    assert not reads_missing_word([out]) and reads_missing_word([src])
    categorical = "if ( LIKELY(  (data[3].missing != -1) && (tmp = (unsigned int)(data[3].fvalue)"
    assert rewrite_tree_code(categorical) == categorical
    assert "#define LOOPER_READS_MISSING_WORD 0" in shim_source(
        N_FEATURE, 1, None, reads_missing_word=False
    )
    assert "#define LOOPER_READS_MISSING_WORD 1" in shim_source(N_FEATURE, 1, None)


def test_numerical_model_reads_rows_uncopied(tmp_path: Path) -> None:
    """No categorical split: every test compares NaN directly, rows are not copied."""
    X, labels = _train_data(1500, seed=4)
    X[:, CAT] += 0.5  # an ordinary numerical feature here
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 15, "verbose": -1},
        lgb.Dataset(X, labels["binary"]),
        num_boost_round=20,
    )
    path = compile_lightgbm(booster, tmp_path / "num", parallel_comp=3)
    lib = CompiledModel.load(path).manifest["library"]
    assert lib["rows_uncopied"] == 1 and lib["translation_units"] == 3
    E = _eval_rows()
    # finite doubles whose low 32 bits are all ones (they alias TL2cgen's missing marker)
    ones = [
        struct.unpack("<d", struct.pack("<Q", (hi << 32) | 0xFFFFFFFF))[0]
        for hi in (0x3FF00000, 0xBFF00000, 0x3FE80000, 0xBFE00000, 0x40000000, 0x3FB00000)
    ]
    E[8 : 8 + len(ones), :] = np.array(ones)[:, None]
    E[20, :], E[21, :] = np.inf, -np.inf
    expected = booster.predict(E)
    for branch_free in (True, False):  # both walks in the library
        model = CompiledModel.load(path, branch_free=branch_free)
        assert model.tree_walk == ("branch_free" if branch_free else "tl2cgen")
        np.testing.assert_array_equal(model.predict(E, num_threads=1), expected)
        np.testing.assert_array_equal(np.array([model.predict_one(r) for r in E]), expected)
        with_none = [None if np.isnan(v) else float(v) for v in E[7]]
        assert model.predict_one(with_none) == expected[7]


def _edge_rows(booster: lgb.Booster, n: int, seed: int) -> np.ndarray:
    """Rows full of the values where a tree walk can go wrong: every split threshold and
    its neighbouring doubles, +-0, LightGBM's zero threshold (+-1e-35 as a float) and its
    neighbours, denormals, +-inf and NaN."""
    rng = np.random.default_rng(seed)
    nf = booster.num_feature()
    thresholds: dict[int, list[float]] = {}

    def walk(node: dict) -> None:
        if "split_index" in node:
            thresholds.setdefault(node["split_feature"], []).append(node["threshold"])
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    X = rng.normal(size=(n, nf))
    for j, ts in thresholds.items():
        pick = rng.random(n) < 0.5
        X[pick, j] = rng.choice(np.array(ts), pick.sum())
        near = rng.random(n) < 0.2
        X[near, j] = np.nextafter(X[near, j], np.where(rng.random(near.sum()) < 0.5, -np.inf, np.inf))
    tiny = float(np.float32(1e-35))
    specials = np.array(
        [0.0, -0.0, tiny, -tiny, np.nextafter(tiny, 1.0), -np.nextafter(tiny, 1.0), 1e-36, 5e-324,
         np.inf, -np.inf, np.nan]
    )  # fmt: skip
    mask = rng.random(X.shape) < 0.1
    X[mask] = rng.choice(specials, mask.sum())
    return X


@pytest.mark.parametrize(
    ("params", "data"),
    [
        ({}, {"nans": 0.1}),
        ({"use_missing": False}, {"nans": 0.1}),
        ({"zero_as_missing": True}, {"zeros": 0.2, "nans": 0.05}),
        ({}, {"infs": 0.05, "nans": 0.05}),
        ({"objective": "regression"}, {"nans": 0.1}),
        ({"sigmoid": 0.7}, {"nans": 0.1}),
    ],
    ids=["nan-missing", "no-missing", "zero-as-missing", "inf-in-training", "regression", "sigmoid"],
)
def test_branch_free_walk_is_bit_identical_to_lightgbm(params: dict, data: dict, tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    X = rng.normal(size=(3000, 6))
    for kind, share in data.items():
        value = {"nans": np.nan, "zeros": 0.0, "infs": np.inf}[kind]
        X[rng.random(X.shape) < share] = value
    z = np.nan_to_num(X, posinf=3.0)
    y = (z[:, 0] + z[:, 1] * z[:, 2] + (X[:, 3] == 0) + np.isnan(X[:, 4]) + rng.normal(size=len(X)) > 0.5)
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 31, "min_data_in_leaf": 5, "verbose": -1, **params},
        lgb.Dataset(X, y.astype(float)),
        num_boost_round=40,
    )
    model = CompiledModel.load(compile_lightgbm(booster, tmp_path / "m", verify_rows=0))
    assert model.tree_walk == "branch_free" and model.manifest["library"]["branch_free"] == 1
    assert "looper_bf_predict_one" in model.manifest["library"]["entry_points"]
    E = _edge_rows(booster, 4000, seed=12)
    expected = booster.predict(E)
    np.testing.assert_array_equal(model.predict(E, num_threads=2), expected)
    np.testing.assert_array_equal(model.predict(E, raw_score=True), booster.predict(E, raw_score=True))
    np.testing.assert_array_equal(np.array([model.predict_one(r) for r in E[:1000]]), expected[:1000])
    score = model.row_scorer(5, [0.0, -np.inf, np.nan])
    for r in E[:200]:
        varied = np.repeat(r[None, :], 3, axis=0)
        varied[:, 5] = [0.0, -np.inf, np.nan]
        assert score(r.tolist()) == booster.predict(varied).tolist()


@pytest.mark.parametrize("last", ["numerical", "categorical"])
def test_varying_the_last_column_walks_the_trees_that_ignore_it_once(last: str, tmp_path: Path) -> None:
    """Scoring a row under several actions varies the last column (a LightGBM categorical
    in the product's models): trees that never read it are walked once for all values,
    the others once per value; results stay exact."""
    rng = np.random.default_rng(5)
    X = rng.normal(size=(3000, 4))
    X[rng.random(X.shape) < 0.1] = np.nan
    if last == "categorical":
        X[:, 3] = rng.integers(0, 5, len(X))
    z = np.nan_to_num(X)
    y = z[:, 0] + z[:, 1] + 0.3 * (z[:, 3] > 1.5) + rng.normal(size=len(X)) > 0.3
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 4, "feature_fraction": 0.75, "verbose": -1},
        lgb.Dataset(X, y.astype(float), categorical_feature=[3] if last == "categorical" else "auto"),
        num_boost_round=60,
    )
    source = branch_free_source(booster.model_to_string())
    groups = dict(re.findall(r"#define (BF_NG\w*) (\d+)", source))
    assert int(groups["BF_NG_FIXED"]) > 0 and int(groups["BF_NG_VARYING"]) > 0
    if last == "categorical":
        assert "BF_CAT" in source
    model = CompiledModel.load(compile_lightgbm(booster, tmp_path / "m", verify_rows=0))
    assert model.tree_walk == "branch_free"
    values = [0.0, 1.0, 2.0, 4.0, 7.5, -1.0, -np.inf, np.nan]
    E = rng.normal(size=(300, 4))
    E[rng.random(E.shape) < 0.1] = np.nan
    for column in (3, 0):  # the last column, then another (every tree per value)
        score = model.row_scorer(column, values)
        for r in E:
            varied = np.repeat(r[None, :], len(values), axis=0)
            varied[:, column] = values
            assert score(r.tolist()) == booster.predict(varied).tolist()
        assert model.row_scorer(column, [2.0])(E[0].tolist()) == [
            booster.predict(np.where(np.arange(4) == column, 2.0, E[0])[None, :])[0]
        ]


def test_which_walk_serves(models: dict[str, CompiledModel]) -> None:
    # one output, with categorical splits: the branch-free walk; multiclass: TL2cgen's
    assert models["binary"].tree_walk == models["regression"].tree_walk == "branch_free"
    assert models["multiclass"].tree_walk == "tl2cgen"
    assert models["multiclass"].manifest["library"]["branch_free"] == 0


def test_branch_free_walk_follows_lightgbm_on_categories(tmp_path: Path) -> None:
    """NaN and negative categories go right, the integer part of a fraction is the
    category, values past the bitset or beyond the int range go right, tiny values are 0."""
    rng = np.random.default_rng(21)
    n = 4000
    X = rng.normal(size=(n, 4))
    X[:, 1] = rng.integers(0, 40, n)
    X[:, 3] = rng.integers(0, 3, n)
    X[rng.random(n) < 0.05, 1] = np.nan
    y = X[:, 0] + np.isin(X[:, 1], [3, 7, 11, 35]) + (X[:, 3] == 1) + rng.normal(size=n) > 0.7
    booster = lgb.train(
        {"objective": "binary", "num_leaves": 31, "min_data_per_group": 5, "cat_smooth": 1.0,
         "max_cat_to_onehot": 2, "verbose": -1},
        lgb.Dataset(X, y.astype(float), categorical_feature=[1, 3]),
        num_boost_round=40,
    )  # fmt: skip
    model = CompiledModel.load(compile_lightgbm(booster, tmp_path / "m"))
    assert model.tree_walk == "branch_free"
    E = rng.normal(size=(6000, 4))
    odd = [0, 3, 7, 11, 35, 39, 40, 64, 1000, -1, -0.5, 0.5, 3.7, -3, np.nan, np.inf, -np.inf,
           1e10, 2.0**31, 2.0**31 - 1, 1e-36, -1e-36]  # fmt: skip
    E[:, 1] = rng.choice(odd, len(E))
    E[:, 3] = rng.choice([0, 1, 2, 3, np.nan, -1, 1.5, 1e-40], len(E))
    expected = booster.predict(E)
    np.testing.assert_array_equal(model.predict(E), expected)
    np.testing.assert_array_equal(np.array([model.predict_one(r) for r in E[:1500]]), expected[:1500])


# ------------------------------------------------------------------------------ threads


def test_concurrent_predict_one(
    models: dict[str, CompiledModel], boosters: dict[str, lgb.Booster]
) -> None:
    rng = np.random.default_rng(11)
    X = rng.normal(size=(4000, N_FEATURE))
    X[:, CAT] = rng.integers(0, 10, size=len(X))
    X[rng.random(X.shape) < 0.1] = np.nan
    errors: list[str] = []
    barrier = threading.Barrier(8)

    def worker(task: str, rows: np.ndarray, expected: np.ndarray) -> None:
        model = models[task]
        barrier.wait()
        for _ in range(3):
            for i, row in enumerate(rows):
                x = row.tolist() if i % 2 else row
                got = model.predict_one(x)
                if not np.allclose(got, expected[i], rtol=0, atol=ATOL):
                    errors.append(f"{task} row {i}: {got} != {expected[i]}")
                    return

    threads = []
    for k in range(8):
        task = ("binary", "multiclass")[k % 2]
        rows = X[k * 500 : (k + 1) * 500]
        threads.append(
            threading.Thread(target=worker, args=(task, rows, boosters[task].predict(rows)))
        )
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# ------------------------------------------------------------------------------ GTIL


def test_gtil_fallback_without_compiler(
    boosters: dict[str, lgb.Booster],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    real_which = shutil.which
    monkeypatch.setattr(
        compiled_mod.shutil, "which", lambda cmd, *a, **k: None if cmd == "gcc" else real_which(cmd)
    )
    X = _eval_rows()
    for task in ("binary", "multiclass"):
        with caplog.at_level(logging.WARNING, logger=compiled_mod.__name__):
            path = compile_lightgbm(boosters[task], tmp_path / task, feature_names=FEATURES)
        assert "falls back to Treelite GTIL" in caplog.text
        manifest = json.loads(path.read_text())
        assert manifest["backend"] == "gtil" and manifest["library"] is None
        assert "not found" in manifest["build"]["fallback_reason"]
        assert not (path.parent / "model.so").exists()
        model = CompiledModel.load(path)
        assert model.backend == "gtil"
        assert check_parity(model, boosters[task], X, atol=ATOL) <= ATOL
        one = model.predict_one(X[3].tolist())
        np.testing.assert_allclose(one, boosters[task].predict(X[3:4])[0], atol=ATOL)
    with pytest.raises(RuntimeError, match="not found"):
        compile_lightgbm(boosters["binary"], tmp_path / "strict", backend="native")
    assert not (tmp_path / "strict").exists()


@pytest.mark.parametrize("task", ["binary", "regression"])
def test_row_scorer_matches_predict_one_on_each_varied_row(
    models: dict[str, CompiledModel], artifacts: dict[str, Path], task: str
) -> None:
    X = _eval_rows()[:100]
    values = [0.0, 1.0, 2.5, float("nan")]
    native = models[task]
    gtil = CompiledModel.load(artifacts[task], backend="gtil")
    for model in (native, gtil):
        for column in (0, N_FEATURE - 1):
            score = model.row_scorer(column, values)
            for x in X:
                rows = [x.copy() for _ in values]
                for r, v in zip(rows, values, strict=True):
                    r[column] = v
                expected = [float(native.predict_one(r)) for r in rows]
                got = score(x.tolist())
                assert type(got) is list and all(type(v) is float for v in got)
                np.testing.assert_allclose(got, expected, rtol=0, atol=0 if model is native else ATOL)
                # None means missing in a list, as for predict_one
                with_none = [None if np.isnan(v) else float(v) for v in x]
                assert score(with_none) == pytest.approx(got, abs=ATOL)
    with pytest.raises(ValueError, match="column"):
        native.row_scorer(N_FEATURE, values)
    with pytest.raises(ValueError, match="feature values"):
        native.row_scorer(0, values)([1.0, 2.0])


def test_gtil_backend_on_native_artifact_and_other_model_inputs(
    artifacts: dict[str, Path], boosters: dict[str, lgb.Booster], tmp_path: Path
) -> None:
    X = _eval_rows()[:200]
    forced = CompiledModel.load(artifacts["regression"], backend="gtil")
    assert forced.backend == "gtil"
    assert check_parity(forced, boosters["regression"], X) <= ATOL
    # a LightGBM text file and a scikit-learn style model are accepted too
    text = tmp_path / "model.txt"
    boosters["regression"].save_model(text)
    from_file = CompiledModel.load(compile_lightgbm(text, tmp_path / "f", backend="gtil"))
    assert from_file.feature_names == FEATURES
    assert check_parity(from_file, boosters["regression"], X) <= ATOL
    Xt, labels = _train_data(800)
    clf = lgb.LGBMClassifier(n_estimators=10, num_leaves=7, verbose=-1).fit(Xt, labels["binary"])
    from_sklearn = CompiledModel.load(compile_lightgbm(clf, tmp_path / "s", backend="gtil"))
    assert check_parity(from_sklearn, clf, X) <= ATOL
    assert from_sklearn.feature_names == [f"Column_{i}" for i in range(N_FEATURE)]


# ------------------------------------------------------------------------------ imports


def test_serving_import_is_light() -> None:
    code = (
        "import sys, looper_pipelines.serving.compiled, looper_pipelines.serving.manifest\n"
        "heavy = ['dagster', 'dbt', 'mlflow', 'econml', 'optuna', 'great_expectations',\n"
        "         'treelite', 'tl2cgen', 'lightgbm']\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


def test_random_forest_and_awkward_feature_names(tmp_path: Path) -> None:
    """A random forest averages its trees (the branch-free walk declines it); features
    named like model fields ("threshold", "decision_type") do not confuse either walk."""
    rng = np.random.default_rng(31)
    X = rng.normal(size=(3000, 3))
    y = (X[:, 0] + X[:, 1] + rng.normal(size=len(X)) > 0).astype(float)
    rf = lgb.train(
        {"objective": "binary", "boosting": "rf", "bagging_freq": 1, "bagging_fraction": 0.5,
         "num_leaves": 15, "verbose": -1},
        lgb.Dataset(X, y),
        num_boost_round=10,
    )  # fmt: skip
    model = CompiledModel.load(compile_lightgbm(rf, tmp_path / "rf"))
    assert model.tree_walk == "tl2cgen"
    E = rng.normal(size=(2000, 3))
    np.testing.assert_allclose(model.predict(E), rf.predict(E), rtol=0, atol=ATOL)
    names = ["threshold", "decision_type", "leaf_value"]
    named = lgb.train(
        {"objective": "binary", "num_leaves": 8, "verbose": -1},
        lgb.Dataset(X, y, feature_name=names),
        num_boost_round=10,
    )
    path = compile_lightgbm(named, tmp_path / "named", feature_names=names)
    for branch_free in (True, False):
        m = CompiledModel.load(path, branch_free=branch_free)
        np.testing.assert_allclose(m.predict(E), named.predict(E), rtol=0, atol=ATOL)


# ------------------------------------------------------------------ one-row calls in C


@pytest.mark.skipif(compiled_mod._rowcall is None, reason="serving._rowcall is not built")
@pytest.mark.filterwarnings("ignore:Warning. converting a masked element to nan")
def test_row_calls_in_c_answer_as_the_ctypes_calls_do(
    artifacts: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    fast = CompiledModel.load(artifacts["binary"])
    with monkeypatch.context() as m:
        m.setattr(compiled_mod, "_rowcall", None)
        slow = CompiledModel.load(artifacts["binary"])
    assert type(fast.predict_one).__name__ == "RowCall"
    assert type(slow.predict_one).__name__ == "function"
    values = [0.0, 1.0, float("nan")]
    fast_score, slow_score = fast.row_scorer(3, values), slow.row_scorer(3, values)
    assert type(fast_score).__name__ == "RowCall"
    row = _eval_rows()[5]
    floats = row.tolist()
    unaligned = np.frombuffer(bytearray(8 * N_FEATURE + 1), np.float64, N_FEATURE, offset=1)
    unaligned[:] = row
    inputs: list[Any] = [
        floats,
        tuple(floats),
        [int(v * 10) if np.isfinite(v) else 0 for v in floats],  # ints
        [True, False, *floats[2:]],  # bools
        [None, *floats[1:]],  # None is missing
        [np.float64(v) for v in floats],  # a float subclass
        [np.float32(v) for v in floats],  # other number types: the ctypes path converts
        ["0.5", *floats[1:]],  # strings too, as numpy converts them
        row,  # float64 rows are read in place
        row.astype(np.float32),  # other dtypes: converted
        np.repeat(row, 2)[::2],  # not contiguous: converted
        row.reshape(1, -1),  # 2-D: reshaped
        np.ma.array(row, mask=[True] + [False] * (N_FEATURE - 1)),  # masked: missing
        unaligned,  # not aligned for doubles: copied
    ]
    for x in inputs:
        assert fast.predict_one(x) == slow.predict_one(x), x
        assert fast_score(x) == slow_score(x), x
    masked = inputs[-2]
    assert fast.predict_one(masked) == slow.predict_one([None, *floats[1:]])
    for bad in (floats[:-1], [*floats, 1.0], np.zeros(N_FEATURE + 1), ["x"] * N_FEATURE):
        for f in (fast.predict_one, slow.predict_one, fast_score, slow_score):
            with pytest.raises((ValueError, TypeError)):
                f(bad)
    for f in (fast.predict_one, slow.predict_one):
        with pytest.raises(OverflowError):
            f([10**400, *floats[1:]])


def test_action_scorer_scores_every_label_in_one_call(
    artifacts: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The models take the features plus an action column (last); RowScores fills the
    row once for every label's model and must answer as the per-label calls do."""
    from looper_pipelines.serving import runtime

    models = {label: CompiledModel.load(artifacts[task]) for label, task in
              (("click", "binary"), ("value", "regression"))}  # fmt: skip
    fast = runtime.ActionScorer(models, n_actions=3, n_features=N_FEATURE - 1)
    with monkeypatch.context() as m:
        m.setattr(runtime, "_rowcall", None)
        slow = runtime.ActionScorer(models, n_actions=3, n_features=N_FEATURE - 1)
    if compiled_mod._rowcall is not None:
        assert type(fast.score_row).__name__ == "RowScores"
    assert type(slow.score_row).__name__ == "method"
    for x in _eval_rows()[:200]:
        row = x[: N_FEATURE - 1].tolist()
        got = fast.score_row(row)
        assert list(got) == ["click", "value"] and got == slow.score_row(row)
        for label, model in models.items():
            assert got[label] == [model.predict_one([*row, float(a)]) for a in range(3)]
    odd = [None, *_eval_rows()[0][1 : N_FEATURE - 1].tolist()]  # None is missing
    assert fast.score_row(odd) == slow.score_row(odd)
    as_array = _eval_rows()[0][: N_FEATURE - 1]  # not a list: the Python path
    assert fast.score_row(as_array) == slow.score_row(as_array)
    for f in (fast.score_row, slow.score_row):
        with pytest.raises(ValueError):
            f([1.0, 2.0])
