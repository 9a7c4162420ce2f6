"""The decision SDK: feature validation, cold start, exploration, observations."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from looper_pipelines.client import LooperClient, LooperInputError
from looper_pipelines.logs import read_decisions, read_observations
from looper_pipelines.logs.records import use_case_of

OK = {"tenure_days": 12.0, "hour_of_day": 20}


@pytest.fixture
def client(home: Path):  # type: ignore[no-untyped-def]
    c = LooperClient.local(home, seed=1)
    yield c
    c.close()


def test_cold_start_serves_the_default_action_and_logs_durably(client: LooperClient, home: Path) -> None:
    d = client.get_decision("notification_send", "u1", OK)
    assert use_case_of(d.decision_id) == "notification_send"
    assert d.model_version is None and d.scores == {}
    assert d.blueprint_version == client.blueprints["notification_send"].version
    logged = read_decisions(home, "notification_send")
    row = logged.row(0, named=True)
    assert row["decision_id"] == d.decision_id and row["action"] == d.action
    assert math.isclose(row["propensity"], d.propensity)
    # defaults filled in and logged, so training sees what serving saw
    import json

    feats = json.loads(row["features"])
    assert feats["sessions_last_7d"] == 0 and feats["platform"] == "web" and feats["notif_open_rate"] is None


def test_propensities_match_the_empirical_action_frequencies(client: LooperClient) -> None:
    actions = [client.get_decision("notification_send", f"u{i}", OK) for i in range(4000)]
    bp = client.blueprints["notification_send"]
    eps, share = bp.decision.exploration.epsilon, bp.experiment.share  # type: ignore[union-attr]
    expected_dont = (1 - share) * eps / 2 + share * 0.5  # default is send
    freq = np.mean([d.action == "dont_send" for d in actions])
    assert abs(freq - expected_dont) < 0.03
    for d in actions:
        p = expected_dont if d.action == "dont_send" else 1 - expected_dont
        assert math.isclose(d.propensity, p, rel_tol=1e-9)
    assert any(d.experiment_arm for d in actions) and any(d.explored for d in actions)
    probs = client.action_probabilities("notification_send", [OK, OK])
    assert np.allclose(probs, [[expected_dont, 1 - expected_dont]] * 2)


@pytest.mark.parametrize(
    ("features", "field", "fragment"),
    [
        ({"hour_of_day": 3}, "features.tenure_days", "required"),
        ({**OK, "tenure_days": "10"}, "features.tenure_days", "expected a number"),
        ({**OK, "tenure_days": float("nan")}, "features.tenure_days", "finite"),
        ({**OK, "hour_of_day": 2.5}, "features.hour_of_day", "integer"),
        ({**OK, "hour_of_day": 30}, "features.hour_of_day", "maximum"),
        ({**OK, "platform": "blackberry"}, "features.platform", "not one of"),
        ({**OK, "platform": 1}, "features.platform", "category"),
        ({**OK, "colour": "red"}, "features.colour", "unknown feature"),
        ({**OK, "sessions_last_7d": True}, "features.sessions_last_7d", "expected a number"),
        ({**OK, "sessions_last_7d": 10**30}, "features.sessions_last_7d", "integer range"),
        ({**OK, "tenure_days": 10**400}, "features.tenure_days", "too large"),
    ],
)
def test_bad_features_name_the_feature(client: LooperClient, home: Path, features: dict, field: str, fragment: str) -> None:
    with pytest.raises(LooperInputError) as e:
        client.get_decision("notification_send", "u1", features)
    assert e.value.field == field and fragment in e.value.problem
    assert read_decisions(home, "notification_send").height == 0  # nothing logged for a rejected call


def test_bad_call_arguments(client: LooperClient) -> None:
    with pytest.raises(LooperInputError, match="use_case"):
        client.get_decision("nope", "u1", OK)
    with pytest.raises(LooperInputError, match="subject_id"):
        client.get_decision("notification_send", "", OK)
    with pytest.raises(LooperInputError, match="features"):
        client.get_decision("notification_send", "u1", [1, 2])  # type: ignore[arg-type]


def test_observations_validate_and_are_idempotent(client: LooperClient, home: Path) -> None:
    d = client.get_decision("notification_send", "u1", OK)
    oid = client.log_observation(d.decision_id, "click", 1, observation_id="o-1")
    assert client.log_observation(d.decision_id, "click", 1, observation_id="o-1") == oid
    for bad_value in (float("nan"), float("inf"), "1"):
        with pytest.raises(LooperInputError, match="value"):
            client.log_observation(d.decision_id, "click", bad_value)  # type: ignore[arg-type]
    with pytest.raises(LooperInputError, match="binary"):
        client.log_observation(d.decision_id, "click", 0.5)
    with pytest.raises(LooperInputError, match="name"):
        client.log_observation(d.decision_id, "purchase", 1)
    with pytest.raises(LooperInputError, match="decision_id"):
        client.log_observation("not-an-id", "click", 1)
    # a decision this process never saw (made elsewhere) is accepted
    foreign = "0" * 28 + "-notification_send"
    client.log_observation(foreign, "unsubscribe", True)
    client.log_observation("ext-42", "click", 1, use_case="notification_send")
    obs = read_observations(home, "notification_send")
    assert obs.height == 3 and set(obs["decision_id"]) == {d.decision_id, foreign, "ext-42"}


def test_observation_ids_are_deduplicated_across_processes(home: Path) -> None:
    with LooperClient.local(home) as a, LooperClient.local(home) as b:
        d = a.get_decision("notification_send", "u1", OK)
        a.log_observation(d.decision_id, "click", 1, observation_id="same")
        b.log_observation(d.decision_id, "click", 1, observation_id="same")
    assert read_observations(home, "notification_send").height == 1


def test_multi_action_cold_start(client: LooperClient) -> None:
    d = client.get_decision("item_recommendation", "u1", {"age": 30.0, "segment": "tech", "is_new_user": False})
    assert d.action.startswith("item_") and 0 < d.propensity <= 1
    probs = client.action_probabilities("item_recommendation", [{}])
    assert probs.shape == (1, 8) and math.isclose(probs.sum(), 1.0)
    eps = client.blueprints["item_recommendation"].decision.exploration.epsilon
    assert probs[0, 0] == pytest.approx(1 - eps + eps / 8)


def test_the_fast_feature_path_matches_the_full_checks() -> None:
    """Values of a feature's own type inside its range skip the full check; what they
    produce (logged dict and model row) must be what the full check produces."""
    from looper_pipelines.blueprints import load_catalog
    from looper_pipelines.client.features import MAX_SAFE_INT, FeatureEncoder, _check_value

    bp = load_catalog()["notification_send"]
    enc = FeatureEncoder(bp)
    cases = [
        OK,
        {"tenure_days": 0.0, "hour_of_day": 0, "notif_open_rate": 1.0, "platform": "ios"},
        {"tenure_days": -0.0, "hour_of_day": 23, "notif_open_rate": 0.0, "sessions_last_7d": MAX_SAFE_INT},
        {"tenure_days": 5, "hour_of_day": 4.0, "days_since_last_visit": 3, "notif_open_rate": None},  # converted
        {"tenure_days": 1e300, "hour_of_day": 12, "platform": "android", "notifs_last_7d": 7},
    ]
    for features in cases:
        normalised, row = enc.normalise_encode(features)
        expected = {
            f.name: (_check_value(f, features[f.name]) if features.get(f.name) is not None else f.default)
            for f in bp.features
        }
        assert normalised == expected and [type(v) for v in normalised.values()] == [
            type(v) for v in expected.values()
        ]
        assert row == pytest.approx(enc.encode(expected), nan_ok=True)
        assert all(type(x) is float for x in row)
    with pytest.raises(LooperInputError, match="integer range"):
        enc.normalise_encode({**OK, "sessions_last_7d": MAX_SAFE_INT + 1})
    with pytest.raises(LooperInputError, match="finite"):
        enc.normalise_encode({**OK, "tenure_days": float("inf")})
    with pytest.raises(LooperInputError, match="minimum"):
        enc.normalise_encode({**OK, "tenure_days": -1e-300})


def test_a_misspelt_feature_is_reported_as_unknown(client: LooperClient) -> None:
    # the required feature is missing because its name is misspelt: name the misspelling
    with pytest.raises(LooperInputError) as e:
        client.get_decision("notification_send", "u1", {"tenure_dayz": 3.0, "hour_of_day": 1})
    assert e.value.field == "features.tenure_dayz" and "unknown feature" in e.value.problem


def test_the_c_feature_encoder_answers_as_the_python_one() -> None:
    """Whatever the features, the C encoder returns what the Python version returns, or
    raises the same error naming the same field."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from looper_pipelines.blueprints import load_catalog
    from looper_pipelines.client import features as features_mod

    if features_mod._features is None:
        pytest.skip("the C feature encoder is not built")
    catalog = load_catalog()
    encoders = [features_mod.FeatureEncoder(catalog[n]) for n in ("notification_send", "item_recommendation")]
    assert all(type(e.normalise_encode).__name__ == "Encoder" for e in encoders)
    names = [*sorted({f.name for e in encoders for f in e.features}), "unknown", "platfrom"]
    values = st.one_of(
        st.none(), st.booleans(),
        st.integers(min_value=-(2**60), max_value=2**60), st.integers(min_value=-3, max_value=30),
        st.floats(allow_nan=True, allow_infinity=True), st.floats(min_value=0, max_value=1),
        st.sampled_from(["ios", "android", "web", "desktop", "", "1.5"]),
        st.lists(st.integers(), max_size=2),
    )  # fmt: skip

    def outcome(fn: Any, features: Any) -> Any:
        try:
            normalised, row = fn(features)
        except LooperInputError as e:
            return ("error", e.field, e.problem)
        return (normalised, [type(v) for v in normalised.values()], list(normalised), [
            ("nan" if math.isnan(x) else x, type(x)) for x in row
        ])

    @settings(max_examples=600, deadline=None)
    @given(st.sampled_from(encoders), st.dictionaries(st.sampled_from(names), values, max_size=9))
    def check(enc: Any, features: dict) -> None:
        assert outcome(enc.normalise_encode, features) == outcome(enc._normalise_encode, features)

    check()

    def valid(f: Any) -> Any:  # mostly values the C encoder takes itself
        lo = f.minimum if f.minimum is not None else -1e6
        hi = f.maximum if f.maximum is not None else 1e6
        own = {
            "float": st.floats(min_value=lo, max_value=hi),
            "int": st.integers(min_value=int(lo), max_value=int(hi)),
            "category": st.sampled_from(f.categories or ["?"]),
            "bool": st.booleans(),
        }[f.type]
        return st.one_of(own, st.none(), values) if not f.required else st.one_of(own, values)

    def mostly_valid(enc: Any) -> Any:
        return st.tuples(st.just(enc), st.fixed_dictionaries(
            {f.name: valid(f) for f in enc.features if f.required},
            optional={f.name: valid(f) for f in enc.features if not f.required},
        ))  # fmt: skip

    @settings(max_examples=600, deadline=None)
    @given(st.one_of(*map(mostly_valid, encoders)))
    def check_valid(case: tuple) -> None:
        enc, features = case
        assert outcome(enc.normalise_encode, features) == outcome(enc._normalise_encode, features)

    check_valid()
    enc = encoders[0]
    for not_a_dict in (None, [("tenure_days", 1.0)], "x"):
        assert outcome(enc.normalise_encode, not_a_dict) == outcome(enc._normalise_encode, not_a_dict)


def test_decide_record_returns_what_was_logged(client: LooperClient, home: Path) -> None:
    import orjson

    rec = client.decide_record("notification_send", "u-rec", OK)
    d = client.get_decision("notification_send", "u-dec", OK)
    logged = read_decisions(home, "notification_send")
    assert logged["decision_id"].to_list() == [rec["decision_id"], d.decision_id]
    row = logged.row(0, named=True)
    for key in ("subject_id", "action", "action_index", "propensity", "model_version",
                "blueprint_version", "policy_version", "explored", "experiment_arm"):  # fmt: skip
        assert row[key] == rec[key], key
    assert orjson.loads(row["features"]) == rec["features"] and rec["features"]["platform"] == "web"
    assert row["timestamp"].timestamp() * 1e6 == pytest.approx(rec["timestamp"], abs=1)
    with pytest.raises(LooperInputError, match="subject_id"):
        client.decide_record("notification_send", "", OK)


# -- input the log cannot store, values beyond the float range, bounded messages ------------
LONE = "\ud800"


def _one_bounded_line(e: pytest.ExceptionInfo[LooperInputError]) -> str:
    text = str(e.value)
    assert "\n" not in text and len(text) < 400, text
    return text


@pytest.mark.parametrize("durability", ["default", "strict"])  # the C append; the Python one
def test_text_the_log_cannot_store_names_the_field_and_stays_retryable(home: Path, durability: str) -> None:
    """A lone surrogate in a subject id, observation id or decision id is a LooperInputError
    naming the field (not a bare ValueError from the encoder); a retry of the refused
    observation id is refused again rather than acknowledged, and nothing is logged."""
    uc = "notification_send"
    with LooperClient.local(home, log_durability=durability, seed=0) as client:
        with pytest.raises(LooperInputError) as e:
            client.get_decision(uc, "u" + LONE, OK)
        assert e.value.field == "subject_id" and "lone surrogate" in _one_bounded_line(e)
        d = client.get_decision(uc, "u1", OK)
        cases = [
            ((d.decision_id, "click", 1, "o" + LONE), {}, "observation_id"),
            ((d.decision_id, "click", 1, "x" * 5000 + LONE), {}, "observation_id"),
            (("ext" + LONE, "click", 1, "o-ok"), {"use_case": uc}, "decision_id"),
        ]
        for args, kwargs, field in cases:
            for _ in range(2):  # the retry is refused too: nothing was stored
                with pytest.raises(LooperInputError) as e:
                    client.log_observation(*args, **kwargs)
                assert e.value.field == field and "lone surrogate" in _one_bounded_line(e)
    assert read_decisions(home, uc)["decision_id"].to_list() == [d.decision_id]
    assert read_observations(home, uc).height == 0


@pytest.mark.parametrize(
    "value", [10**400, -(10**400), float("inf"), float("-inf"), float("nan")],
    ids=["10**400", "-10**400", "inf", "-inf", "nan"],
)  # fmt: skip
def test_observation_values_beyond_the_float_range_name_the_value(client: LooperClient, home: Path, value: float) -> None:
    d = client.get_decision("notification_send", "u1", OK)
    with pytest.raises(LooperInputError) as e:
        client.log_observation(d.decision_id, "click", value)
    assert e.value.field == "value" and "finite" in _one_bounded_line(e)
    assert read_observations(home, "notification_send").height == 0


def test_error_messages_quote_at_most_80_characters(client: LooperClient) -> None:
    """However long the bad value, the error is one line that quotes a bounded part of it,
    from the Python feature checks and the C encoder's hand-over alike."""
    from looper_pipelines.client.features import FeatureEncoder

    huge = "y" * 100_000
    calls = [
        (lambda: client.get_decision(huge, "u", OK), "use_case"),
        (lambda: client.get_decision("notification_send", "u", {**OK, "platform": huge}), "features.platform"),
        (lambda: client.get_decision("notification_send", "u", {**OK, "tenure_days": -(10**5000)}), "features.tenure_days"),
        (lambda: client.log_observation(huge, "click", 1), "decision_id"),
        (lambda: client.log_observation("0" * 28 + "-notification_send", huge, 1), "name"),
        (lambda: client.log_observation("0" * 28 + "-notification_send", "click", 10**5000), "value"),
    ]
    for call, field in calls:
        with pytest.raises(LooperInputError) as e:
            call()
        assert e.value.field == field and huge not in str(e.value)
        _one_bounded_line(e)
    enc = FeatureEncoder(client.blueprints["notification_send"])
    for fn in (enc.normalise_encode, enc._normalise_encode):  # C (when built), Python
        with pytest.raises(LooperInputError) as e:
            fn({**OK, huge: 1})
        assert e.value.field.startswith("features.'yyy") and len(e.value.field) < 150
        _one_bounded_line(e)
