"""The row a decision is served with equals the row training builds from its logged record,
whatever the feature dict the SDK accepted, including records that lack defaulted features
(as records of an older blueprint lineage do)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from looper_pipelines.blueprints import load_catalog
from looper_pipelines.blueprints.model import Blueprint, Feature
from looper_pipelines.client.features import FeatureEncoder
from looper_pipelines.training.dataset import feature_matrix

CATALOG = load_catalog(None)


def _value(f: Feature) -> st.SearchStrategy[Any]:
    if f.type == "category":
        return st.sampled_from(list(f.categories or []))
    if f.type == "bool":
        return st.booleans()
    lo = f.minimum if f.minimum is not None else -1e6
    hi = f.maximum if f.maximum is not None else 1e6
    if f.type == "int":
        return st.integers(int(np.ceil(lo)), int(np.floor(hi)))
    return st.floats(lo, hi, allow_nan=False, allow_infinity=False)


@st.composite
def accepted_features(draw: st.DrawFn, bp: Blueprint) -> dict[str, Any]:
    """A feature dict the SDK accepts: required features present, others present, null or absent."""
    out: dict[str, Any] = {}
    for f in bp.features:
        choice = "value" if f.required else draw(st.sampled_from(["value", "absent", "null"]))
        if choice == "value":
            out[f.name] = draw(_value(f))
        elif choice == "null":
            out[f.name] = None
    return out


def _same(a: np.ndarray, b: np.ndarray) -> bool:
    return bool(np.array_equal(np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64), equal_nan=True))


@pytest.mark.parametrize("use_case", sorted(CATALOG))
@settings(max_examples=150, deadline=None)
@given(data=st.data())
def test_served_row_equals_trained_row(use_case: str, data: st.DataObject) -> None:
    bp = CATALOG[use_case]
    encoder = FeatureEncoder(bp)
    given_features = data.draw(accepted_features(bp))
    normalised, served = encoder.normalise_encode(given_features)
    # the record as the SDK logs it (defaults filled in), and as a writer that logged only what
    # it was given (an older lineage, another writer): both train as the row that served
    as_logged = json.dumps(normalised)
    as_given = json.dumps({k: v for k, v in given_features.items() if v is not None})
    trained = feature_matrix(bp, pl.Series([as_logged, as_given]))
    assert _same(trained[0], served), (given_features, served, trained[0])
    assert _same(trained[1], served), (given_features, served, trained[1])


def test_a_record_without_its_defaulted_features_trains_as_it_served() -> None:
    bp = CATALOG["notification_send"]
    served = FeatureEncoder(bp).normalise_encode({"tenure_days": 3.0, "hour_of_day": 5})[1]
    assert _same(np.array(served), np.array([3.0, 0.0, 30.0, np.nan, 0.0, 2.0, 5.0]))
    trained = feature_matrix(bp, pl.Series(['{"tenure_days": 3.0, "hour_of_day": 5}']))[0]
    assert _same(trained, np.array(served)), trained


def test_model_inputs_are_the_features_then_the_action() -> None:
    from looper_pipelines.features import (
        ACTION_INPUT,
        action_grid,
        categorical_inputs,
        input_names,
        with_action,
    )

    bp = CATALOG["item_recommendation"]
    assert input_names(bp) == [*bp.feature_names, ACTION_INPUT]
    assert categorical_inputs(bp)[-1] == ACTION_INPUT
    assert set(categorical_inputs(bp)[:-1]) == {f.name for f in bp.features if f.type == "category"}
    x = np.array([[1.0, 2.0], [3.0, 4.0]])
    grid = action_grid(x, 3)
    assert grid.tolist() == [[1, 2, 0], [1, 2, 1], [1, 2, 2], [3, 4, 0], [3, 4, 1], [3, 4, 2]]
    assert with_action(x, np.array([2, 0])).tolist() == [[1, 2, 2], [3, 4, 0]]
