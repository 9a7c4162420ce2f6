"""Request and response models of the HTTP decision service, and its OpenAPI document.

The pydantic models are the documented contract: the OpenAPI 3.1 document served at
``/openapi.json`` is generated from them (``build_openapi``). The request path does not
run them: it checks the request envelope with the hand-written functions at the end of
this module, which accept exactly what the envelope models accept (a test holds them to
that) and are several times faster; feature values are checked by the SDK.

Per use case, ``build_openapi`` also derives a request model from the blueprint (feature
names, types, ranges, categories, which are required), so the document tells a client
exactly which features each use case takes.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model
from pydantic.json_schema import models_json_schema

from looper_pipelines.blueprints import Blueprint, Feature
from looper_pipelines.client.features import MAX_SAFE_INT
from looper_pipelines.errors import shown_key

API_VERSION = "1"
DEFAULT_MAX_BODY_BYTES = 1 << 20
DEFAULT_MAX_BATCH = 1000

FeatureValue = float | int | bool | str | None


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


# -- requests -----------------------------------------------------------------------------
class DecisionRequest(_Model):
    """One decision for one subject. ``features`` are checked against the use case's
    blueprint: unknown names, wrong types, out-of-range values and missing required
    features are errors naming ``features.<name>``; missing optional ones take the
    blueprint's default."""

    use_case: str = Field(description="Name of the use case (its blueprint).")
    subject_id: str = Field(min_length=1, description="Who or what the decision is for.")
    features: dict[str, FeatureValue] = Field(
        default_factory=dict, description="Feature values by name, as declared in the blueprint."
    )


class BatchDecisionRequest(_Model):
    """Up to ``max_batch`` decisions in one call (the limit is in the document's
    ``maxItems``)."""

    requests: list[DecisionRequest]


class ObservationRequest(_Model):
    """An outcome of a decision. Idempotent by ``observation_id`` (generated when absent)."""

    decision_id: str = Field(min_length=1, description="The id a decision call returned.")
    name: str = Field(description="A label name of the decision's use case.")
    value: Annotated[float, Field(allow_inf_nan=False)] | bool = Field(
        description="The observed value: finite; 0/1 (or a boolean) for a binary label."
    )
    observation_id: str | None = Field(
        default=None,
        min_length=1,
        description="Idempotency key; a repeat is acknowledged, not logged.",
    )
    use_case: str | None = Field(
        default=None,
        min_length=1,
        description="Only for decision ids not made by Looper (imported logs).",
    )


# -- responses ----------------------------------------------------------------------------
class DecisionResponse(BaseModel):
    decision_id: str = Field(description="Time-ordered unique id; pass it to /v1/observations.")
    action: str = Field(description="The chosen action.")
    propensity: float = Field(description="Probability that this action was chosen.")
    scores: dict[str, list[float]] = Field(
        description="Model predictions per label, one per action in blueprint order; empty on a cold start."
    )
    model_version: str | None = Field(
        description="Null until a model is promoted (default action)."
    )
    blueprint_version: str
    policy_version: str
    explored: bool = Field(description="Whether the action was picked by exploration.")
    experiment_arm: str | None = Field(
        description="The experiment arm, when the decision was in one."
    )


class ErrorDetail(BaseModel):
    field: str = Field(
        description="The offending field as a dotted path (e.g. 'features.age', 'requests.3.use_case'); "
        "'body' for the body as a whole, 'authorization' for the token, 'storage' when the "
        "log could not store the record (503)."
    )
    message: str


class ErrorResponse(BaseModel):
    error: ErrorDetail


class BatchDecisionResponse(BaseModel):
    decisions: list[DecisionResponse] = Field(
        description="One decision per request, in request order."
    )


class ObservationResponse(BaseModel):
    observation_id: str


class UseCaseStatus(BaseModel):
    blueprint_version: str
    model_version: str | None
    policy_version: str
    status: Literal["ok", "degraded"] = Field(
        description="'degraded' when the published version did not verify and something else serves."
    )
    state: Literal["ok", "kept", "fallback", "default"] = Field(
        description="ok: the published version serves (or none is published); kept: the model "
        "loaded before keeps serving; fallback: the newest published version that verifies "
        "serves; default: no published version verifies, the default action serves."
    )
    published_version: str | None
    serving_version: str | None = Field(
        description="The published version whose model serves; null: the default action."
    )
    rejected_version: str | None
    reason: str | None = Field(description="Why the published version was refused.")


class HealthResponse(BaseModel):
    status: Literal["ok", "degraded"]
    use_cases: dict[str, UseCaseStatus]


# -- per-use-case request models from blueprints -------------------------------------------
_INT_RANGE = (-MAX_SAFE_INT, MAX_SAFE_INT)  # what the SDK accepts for int features


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in re.split(r"[_\W]+", name) if part)


def _feature_field(f: Feature) -> tuple[Any, Any]:
    lo, hi = f.minimum, f.maximum
    py: Any
    if f.type == "category":
        py = Literal[tuple(f.categories or ())]  # type: ignore[misc]
    elif f.type == "bool":
        py = bool
    elif f.type == "int":
        lo_i = _INT_RANGE[0] if lo is None else max(_INT_RANGE[0], int(-(-lo // 1)))
        hi_i = _INT_RANGE[1] if hi is None else min(_INT_RANGE[1], int(hi // 1))
        py = Annotated[int, Field(ge=lo_i, le=hi_i)]
    else:
        py = Annotated[float, Field(ge=lo, le=hi, allow_inf_nan=False)]
    if f.required:
        return py, Field(description=f"{f.type}, required")
    return py | None, Field(
        default=f.default, description=f"{f.type}; missing or null means the default"
    )


def use_case_request_model(bp: Blueprint) -> type[BaseModel]:
    """The decision request of one use case, with its features typed from the blueprint."""
    prefix = _camel(bp.name)
    features_model = create_model(  # type: ignore[call-overload]
        f"{prefix}Features",
        __config__=ConfigDict(extra="forbid"),
        __doc__=f"Features of use case {bp.name!r}, in model input order.",
        **{f.name: _feature_field(f) for f in bp.features},
    )
    has_required = any(f.required for f in bp.features)
    features_spec: Any = Field(...) if has_required else Field(default_factory=dict)
    return create_model(  # type: ignore[call-overload]
        f"{prefix}DecisionRequest",
        __config__=ConfigDict(extra="forbid"),
        __doc__=(bp.description or f"A decision of use case {bp.name!r}.").strip(),
        use_case=(Literal[bp.name], Field(...)),  # type: ignore[valid-type]
        subject_id=(str, Field(min_length=1)),
        features=(features_model, features_spec),
    )


def use_case_observation_models(bp: Blueprint) -> list[type[BaseModel]]:
    """The observation requests of one use case: per label, one for a Looper decision id
    (which names the use case) and one for an imported id with ``use_case`` given."""
    out: list[type[BaseModel]] = []
    looper_id = rf"^[0-9a-f]{{28}}-{bp.name}$"
    for label in bp.labels:
        value: Any
        if label.kind == "binary":
            value = (Literal[0, 1] | bool, Field(description="0 or 1 (or a boolean)"))
        else:
            value = (
                Annotated[float, Field(allow_inf_nan=False)] | bool,
                Field(description="finite"),
            )
        common: dict[str, Any] = {
            "name": (Literal[label.name], Field(...)),  # type: ignore[valid-type]
            "value": value,
            "observation_id": (
                str | None,
                Field(default=None, min_length=1, description="Idempotency key"),
            ),
        }
        prefix = f"{_camel(bp.name)}{_camel(label.name)}"
        out.append(
            create_model(  # type: ignore[call-overload]
                f"{prefix}Observation",
                __config__=ConfigDict(extra="forbid"),
                __doc__=f"Label {label.name!r} ({label.kind}) of a {bp.name!r} decision.",
                decision_id=(
                    str,
                    Field(pattern=looper_id, description="Returned by a decision call"),
                ),
                use_case=(None, Field(default=None, description="Implied by the decision id")),
                **common,
            )
        )
        out.append(
            create_model(  # type: ignore[call-overload]
                f"{prefix}ImportedObservation",
                __config__=ConfigDict(extra="forbid"),
                __doc__=f"Label {label.name!r} ({label.kind}) of an imported {bp.name!r} decision.",
                decision_id=(str, Field(min_length=1)),
                use_case=(Literal[bp.name], Field(...)),  # type: ignore[valid-type]
                **common,
            )
        )
    return out


def _observation_union(blueprints: Mapping[str, Blueprint]) -> Any:
    models = [m for _, bp in sorted(blueprints.items()) for m in use_case_observation_models(bp)]
    if not models:
        return ObservationRequest
    if len(models) == 1:
        return models[0]
    return Union[tuple(models)]  # noqa: UP007


def _request_union(blueprints: Mapping[str, Blueprint]) -> Any:
    models = [use_case_request_model(bp) for _, bp in sorted(blueprints.items())]
    if not models:
        return DecisionRequest
    if len(models) == 1:
        return models[0]
    return Annotated[Union[tuple(models)], Field(discriminator="use_case")]  # noqa: UP007


# -- the OpenAPI document -----------------------------------------------------------------
_REF = "#/components/schemas/{model}"


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": _json("ErrorResponse")}


def build_openapi(
    blueprints: Mapping[str, Blueprint],
    *,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    token_required: bool = False,
    title: str = "Looper decision service",
    version: str = "0.1.0",
) -> dict[str, Any]:
    """OpenAPI 3.1 document of the service as configured (use cases, limits, auth)."""
    request_type = _request_union(blueprints)

    class AnyDecisionRequest(RootModel[request_type]):  # type: ignore[valid-type]
        """A decision request of one of the served use cases."""

    class AnyObservationRequest(RootModel[_observation_union(blueprints)]):  # type: ignore[misc]
        """An observation of a decision of one of the served use cases: a label of that
        use case and a value of the label's kind."""

    BatchRequest = create_model(  # type: ignore[call-overload]
        "BatchDecisionRequest",
        __config__=ConfigDict(extra="forbid"),
        __doc__=BatchDecisionRequest.__doc__,
        requests=(list[request_type], Field(max_length=max_batch)),  # type: ignore[valid-type]
    )
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (AnyDecisionRequest, "validation"),
        (BatchRequest, "validation"),
        (AnyObservationRequest, "validation"),
        (DecisionResponse, "serialization"),
        (BatchDecisionResponse, "serialization"),
        (ObservationResponse, "serialization"),
        (HealthResponse, "serialization"),
        (ErrorResponse, "serialization"),
    ]
    refs, defs = models_json_schema(models, ref_template=_REF)
    schemas: dict[str, Any] = dict(defs.get("$defs", {}))
    for (model, _), schema in refs.items():
        if "$ref" not in schema:
            schemas[model.__name__] = schema

    auth = {401: _error("Missing or wrong bearer token.")} if token_required else {}
    common = {
        "400": _error("The body is not valid JSON."),
        **{str(k): v for k, v in auth.items()},
        "408": _error(
            "The headers or the body did not arrive within the server's read timeouts "
            "('field' is 'headers' or 'body'); the connection is closed."
        ),
        "413": _error(f"The body is larger than {max_body_bytes} bytes."),
        "422": _error("A field is missing, of the wrong type or not allowed; 'field' names it."),
        "503": _error(
            "The log could not store the record ('field' is 'storage'); nothing was acknowledged, retry."
        ),
    }
    security = [{"bearerAuth": []}] if token_required else []

    def op(
        op_id: str, summary: str, description: str, req: str, resp: str, extra: dict[str, Any]
    ) -> dict[str, Any]:
        o: dict[str, Any] = {
            "operationId": op_id,
            "summary": summary,
            "description": description,
            "requestBody": {"required": True, "content": _json(req)},
            "responses": {"200": {"description": "OK", "content": _json(resp)}, **common, **extra},
        }
        if security:
            o["security"] = security
        return o

    unknown_uc = {"404": _error("Unknown use case ('field' is 'use_case').")}
    paths: dict[str, Any] = {
        "/v1/decisions": {
            "post": op(
                "getDecision",
                "Make one decision",
                "Validates the features against the use case's blueprint, chooses an action with "
                "the deployed model and policy, logs the decision durably and returns it.",
                "AnyDecisionRequest",
                "DecisionResponse",
                unknown_uc,
            )
        },
        "/v1/decisions:batch": {
            "post": op(
                "getDecisions",
                "Make many decisions",
                f"At most {max_batch} requests. All or nothing: every item is validated before any "
                "decision is made, and one invalid item rejects the batch (nothing is logged) with "
                "the error naming it: 422 'requests.<i>.<field>' (e.g. 'requests.3.features.age'), "
                "404 'requests.<i>.use_case' for an unknown use case.",
                "BatchDecisionRequest",
                "BatchDecisionResponse",
                {
                    "404": _error(
                        "Unknown use case of an item ('field' is 'requests.<i>.use_case')."
                    )
                },
            )
        },
        "/v1/observations": {
            "post": op(
                "logObservation",
                "Log an observation of a decision",
                "Records an outcome (a label value) of a decision made by any replica. Idempotent by "
                "'observation_id'.",
                "AnyObservationRequest",
                "ObservationResponse",
                {"404": _error("Unknown use case.")},
            )
        },
        "/healthz": {
            "get": {
                "operationId": "health",
                "summary": "Liveness, served use cases and loaded versions (no token needed)",
                "responses": {"200": {"description": "OK", "content": _json("HealthResponse")}},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus text exposition (no token needed)",
                "responses": {
                    "200": {
                        "description": "Metrics in the Prometheus text format 0.0.4.",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "OK",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    }
                },
            }
        },
    }
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {
            "title": title,
            "version": version,
            "description": "Decisions and observations over HTTP, through the same SDK as in-process calls. "
            'Errors are JSON objects {"error": {"field", "message"}} naming the offending field.',
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
    if token_required:
        doc["components"]["securitySchemes"] = {
            "bearerAuth": {
                "type": "http",
                "scheme": "bearer",
                "description": "--token or $LOOPER_API_TOKEN",
            }
        }
    return doc


# -- the hand-written envelope checks used on the request path ----------------------------
class RequestError(Exception):
    """A request the service rejects: HTTP ``status``, the offending ``field``, a message
    and a ``kind`` (the metrics label)."""

    __slots__ = ("field", "kind", "message", "status")

    def __init__(
        self, status: int, field: str, message: str, kind: str = "invalid_request"
    ) -> None:
        super().__init__(f"{field}: {message}")
        self.status = status
        self.field = field
        self.message = message
        self.kind = kind


_DECISION_KEYS = frozenset(("use_case", "subject_id", "features"))
_OBSERVATION_KEYS = frozenset(("decision_id", "name", "value", "observation_id", "use_case"))
_SCALARS = (str, int, float, bool, type(None))


def _invalid(field: str, message: str) -> RequestError:
    return RequestError(422, field, message)


def _type_name(v: object) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "number" if isinstance(v, int | float) else type(v).__name__
    )


def _unexpected(data: dict[str, Any], allowed: frozenset[str], prefix: str) -> RequestError:
    for k in data:
        if k not in allowed:
            return _invalid(f"{prefix}{shown_key(k)}", f"unexpected field; allowed: {sorted(allowed)}")
    raise AssertionError("no unexpected key")  # pragma: no cover


def check_decision(data: Any, prefix: str = "") -> tuple[str, str, dict[str, Any]]:
    """``(use_case, subject_id, features)`` of a decision request envelope, or
    ``RequestError`` (422) naming the field. ``prefix`` is prepended to field names."""
    if type(data) is not dict:
        raise _invalid(prefix.rstrip(".") or "body", f"expected an object, got {_type_name(data)}")
    use_case = data.get("use_case")
    subject_id = data.get("subject_id")
    features = data.get("features", _EMPTY)
    if (
        type(use_case) is not str
        or type(subject_id) is not str
        or not subject_id
        or type(features) is not dict
    ):
        for name, value in (("use_case", use_case), ("subject_id", subject_id)):
            if value is None and name not in data:
                raise _invalid(prefix + name, "field required")
            if type(value) is not str:
                raise _invalid(prefix + name, f"expected a string, got {_type_name(value)}")
        if not subject_id:
            raise _invalid(prefix + "subject_id", "must be a non-empty string")
        raise _invalid(prefix + "features", f"expected an object, got {_type_name(features)}")
    if len(data) != (3 if "features" in data else 2):
        raise _unexpected(data, _DECISION_KEYS, prefix)
    for k, v in features.items():
        if not isinstance(v, _SCALARS):
            raise _invalid(
                f"{prefix}features.{shown_key(k)}",
                f"expected a number, string, boolean or null, got {_type_name(v)}",
            )
    return use_case, subject_id, features


_EMPTY: dict[str, Any] = {}


def check_batch(data: Any, max_batch: int) -> list[Any]:
    """The ``requests`` list of a batch envelope (items are checked by the caller)."""
    if type(data) is not dict:
        raise _invalid("body", f"expected an object, got {_type_name(data)}")
    if "requests" not in data:
        raise _invalid("requests", "field required")
    if len(data) > 1:
        raise _unexpected(data, frozenset(("requests",)), "")
    requests = data["requests"]
    if type(requests) is not list:
        raise _invalid("requests", f"expected an array, got {_type_name(requests)}")
    if len(requests) > max_batch:
        raise _invalid("requests", f"at most {max_batch} requests per batch, got {len(requests)}")
    return requests


def check_observation(data: Any) -> tuple[str, str, float | int | bool, str | None, str | None]:
    """``(decision_id, name, value, observation_id, use_case)`` of an observation envelope."""
    if type(data) is not dict:
        raise _invalid("body", f"expected an object, got {_type_name(data)}")
    for k in data:
        if k not in _OBSERVATION_KEYS:
            raise _invalid(shown_key(k), f"unexpected field; allowed: {sorted(_OBSERVATION_KEYS)}")
    for name in ("decision_id", "name", "value"):
        if name not in data:
            raise _invalid(name, "field required")
    decision_id, name, value = data["decision_id"], data["name"], data["value"]
    if type(decision_id) is not str or not decision_id:
        raise _invalid("decision_id", f"expected a non-empty string, got {_type_name(decision_id)}")
    if type(name) is not str:
        raise _invalid("name", f"expected a string, got {_type_name(name)}")
    if type(value) not in (int, float, bool):
        raise _invalid("value", f"expected a number, got {_type_name(value)}")
    observation_id = data.get("observation_id")
    if observation_id is not None and (type(observation_id) is not str or not observation_id):
        raise _invalid("observation_id", "expected a non-empty string or null")
    use_case = data.get("use_case")
    if use_case is not None and (type(use_case) is not str or not use_case):
        raise _invalid("use_case", "expected a non-empty string or null")
    return decision_id, name, value, observation_id, use_case
