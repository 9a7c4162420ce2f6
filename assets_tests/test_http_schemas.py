"""The HTTP service's request checks without a server: the hand-written envelope checks
accept exactly what the documented pydantic models accept and name a field pydantic names;
the JSON reader never fails with anything but a 400."""

from __future__ import annotations

import json
import math
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import TypeAdapter, ValidationError

from looper_pipelines.blueprints import load_catalog
from looper_pipelines.serving.http import build_openapi, parse_json
from looper_pipelines.serving.http.schemas import (
    BatchDecisionRequest,
    DecisionRequest,
    ObservationRequest,
    RequestError,
    check_batch,
    check_decision,
    check_observation,
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False)
    | st.text(max_size=5)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=6,
)


def envelope(keys: list[str], values: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[Any]:
    """Objects drawing each key from ``keys`` (present or not) with its plausible values or
    any JSON value, plus sometimes an unexpected key; or, rarely, not an object at all."""
    fields = {k: values.get(k, json_values) | json_values for k in keys}
    obj = st.fixed_dictionaries({}, optional={**fields, "extra": json_values})
    return st.one_of(obj, obj, obj, json_values)


features = st.dictionaries(st.text(max_size=4), scalars | json_values, max_size=3)
decisions = envelope(
    ["use_case", "subject_id", "features"],
    {"use_case": st.text(max_size=5), "subject_id": st.text(max_size=3), "features": features},
)
observations = envelope(
    ["decision_id", "name", "value", "observation_id", "use_case"],
    {
        "decision_id": st.text(max_size=3),
        "name": st.text(max_size=3),
        "value": st.floats(allow_nan=False, allow_infinity=False)
        | st.integers(-(2**63), 2**63 - 1)
        | st.booleans(),
        "observation_id": st.none() | st.text(max_size=3),
        "use_case": st.none() | st.text(max_size=3),
    },
)


DECISION = TypeAdapter(DecisionRequest)
OBSERVATION = TypeAdapter(ObservationRequest)
BATCH = TypeAdapter(BatchDecisionRequest)


def pydantic_fields(adapter: TypeAdapter[Any], data: Any) -> set[str] | None:
    """None when the model accepts ``data``, else the dotted paths of its errors (each
    with its prefixes, as union errors add the member's name to the path)."""
    try:
        adapter.validate_python(data)
    except ValidationError as e:
        out: set[str] = set()
        for err in e.errors():
            parts = [str(p) for p in err["loc"]]
            out.update(".".join(parts[:i]) if i else "body" for i in range(len(parts) + 1))
        return out
    return None


def agree(adapter: TypeAdapter[Any], check: Any, data: Any) -> None:
    expected = pydantic_fields(adapter, data)
    try:
        check(data)
    except RequestError as e:
        assert e.status == 422
        assert expected is not None, (
            f"hand-written check rejected what the model accepts: {data!r} ({e})"
        )
        assert e.field in expected, f"{e.field!r} not among {sorted(expected)} for {data!r}"
        return
    assert expected is None, f"hand-written check accepted what the model rejects: {data!r}"


@settings(max_examples=200, deadline=None)
@given(decisions)
def test_decision_check_agrees_with_model(data: Any) -> None:
    agree(DECISION, check_decision, data)


@settings(max_examples=200, deadline=None)
@given(observations)
def test_observation_check_agrees_with_model(data: Any) -> None:
    agree(OBSERVATION, check_observation, data)


@settings(max_examples=100, deadline=None)
@given(envelope(["requests"], {"requests": st.lists(decisions, max_size=3)}))
def test_batch_check_agrees_with_model(data: Any) -> None:
    def check(d: Any) -> None:
        for i, item in enumerate(check_batch(d, max_batch=10)):
            check_decision(item, f"requests.{i}.")

    agree(BATCH, check, data)


def test_batch_length_limit() -> None:
    item = {"use_case": "u", "subject_id": "s"}
    assert len(check_batch({"requests": [item] * 3}, max_batch=3)) == 3
    with pytest.raises(RequestError) as e:
        check_batch({"requests": [item] * 4}, max_batch=3)
    assert (e.value.status, e.value.field) == (422, "requests")


# -- the JSON reader -----------------------------------------------------------------------
wide_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=4),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=8,
)


@settings(max_examples=200, deadline=None)
@given(wide_json)
def test_parse_json_reads_what_the_standard_library_writes(value: Any) -> None:
    """NaN, Infinity and integers of any size come back as values the log can encode."""
    parsed = parse_json(json.dumps(value).encode())
    orjson.dumps(parsed)  # never an integer beyond 64 bits, never invalid text

    def same(a: Any, b: Any) -> bool:
        if isinstance(a, float) or isinstance(b, float):
            return (math.isnan(a) and math.isnan(b)) or float(a) == float(b)
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        return a == b

    assert same(parsed, value)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40) | st.text(max_size=20).map(str.encode))
def test_parse_json_rejects_garbage_with_400(body: bytes) -> None:
    try:
        parsed = parse_json(body)
    except RequestError as e:
        if e.status == 422:  # JSON, but with a string that is not valid text ("\ud800")
            assert e.kind == "invalid_input" and "lone surrogate" in e.message
        else:
            assert (e.status, e.field, e.kind) == (400, "body", "malformed_json")
    else:
        orjson.dumps(parsed)


@pytest.mark.parametrize(
    ("body", "status", "field"),
    [
        (b"[" * 100_000, 400, "body"),
        (b"\xff", 400, "body"),
        (b"", 400, "body"),
        # valid JSON holding text no log can store: a 422 naming the field
        (b'{"a": "\\ud800"}', 422, "a"),
        (b'"\\udfff"', 422, "body"),
        (b'{"features": {"platform": "x\\ud800"}}', 422, "features.platform"),
        (b'{"requests": [{"subject_id": "u"}, {"subject_id": "\\ud800"}]}', 422, "requests.1.subject_id"),
        (b'{"features": {"\\ud800": 1}}', 422, "features.'\\ud800'"),
    ],
)
def test_parse_json_errors(body: bytes, status: int, field: str) -> None:
    with pytest.raises(RequestError) as e:
        parse_json(body)
    assert (e.value.status, e.value.field) == (status, field)
    assert "\n" not in e.value.message and len(e.value.message) < 300
    orjson.dumps({"field": e.value.field, "message": e.value.message})  # servable as JSON


def test_openapi_document_follows_the_blueprints() -> None:
    catalog = load_catalog()
    doc = build_openapi(catalog, max_batch=7, max_body_bytes=100, token_required=False)
    schemas = doc["components"]["schemas"]
    ns = catalog["notification_send"]
    props = schemas["NotificationSendFeatures"]["properties"]
    assert list(props) == ns.feature_names
    assert props["hour_of_day"] == {
        "description": "int, required",
        "maximum": 23,
        "minimum": 0,
        "title": "Hour Of Day",
        "type": "integer",
    }
    assert props["platform"]["anyOf"][0]["enum"] == ["ios", "android", "web"]
    assert schemas["NotificationSendFeatures"]["additionalProperties"] is False
    mapping = schemas["AnyDecisionRequest"]["discriminator"]["mapping"]
    assert set(mapping) == set(catalog)
    assert "security" not in doc["paths"]["/v1/decisions"]["post"]
    assert "401" not in doc["paths"]["/v1/decisions"]["post"]["responses"]
    assert "securitySchemes" not in doc["components"]
    names = {
        schemas[r["$ref"].rsplit("/", 1)[1]]["properties"]["name"]["const"]
        for r in schemas["AnyObservationRequest"]["anyOf"]
    }
    assert names == {lb.name for bp in catalog.values() for lb in bp.labels}


def test_field_names_made_of_keys_are_bounded() -> None:
    """An unexpected key is named in the error, but a huge one only in part."""
    huge = "k" * 10_000
    calls = [
        lambda: check_decision({"use_case": "u", "subject_id": "s", huge: 1}),
        lambda: check_decision({"use_case": "u", "subject_id": "s", "features": {huge: [1]}}),
        lambda: check_observation({"decision_id": "d", "name": "n", "value": 1, huge: 1}),
    ]
    for call in calls:
        with pytest.raises(RequestError) as e:
            call()
        assert e.value.status == 422 and "kkkk" in e.value.field and len(e.value.field) < 150
