"""The ASGI application of the decision service.

``create_app`` returns a ``LooperHTTP``: an ASGI callable holding one ``LooperClient`` (so
decisions made over HTTP are logged exactly like in-process ones). The three ``/v1``
routes are served by a thin raw-ASGI path: read the body, ``orjson.loads``, check the
envelope by hand, call the SDK synchronously on the event loop (it takes tens of
microseconds; a thread hop would cost more), ``orjson.dumps``, one ``send`` for the head
and one for the body. Everything else (``/healthz``, ``/metrics``, ``/openapi.json`` and
JSON 404/405 for unknown routes) goes to an inner Starlette application.

Errors are ``{"error": {"field": ..., "message": ...}}`` naming the offending field:
400 malformed JSON, 401 missing or wrong bearer token (``/v1/*`` only), 404 unknown use
case, 405 wrong method, 408 a body that did not arrive in time, 413 body too large, 422
anything else about the input (the field is the dotted path: ``features.age``,
``requests.3.subject_id``; a string that is not valid Unicode text, such as a lone
surrogate ``"\ud800"``, is named too). A 503 (field ``storage``) means the decision log
could not store the record (a full disk, an unwritable log folder): nothing was
acknowledged and the request can be retried, with the same ``observation_id`` for an
observation. A 500 means another fault of the service itself; input cannot cause one.

A batch (``/v1/decisions:batch``) is all or nothing: every item is validated first and a
single bad item rejects the batch (nothing logged), naming ``requests.<i>.<field>``.
With a token, ``/v1/*`` needs ``Authorization: Bearer <token>``; ``/healthz``,
``/metrics`` and ``/openapi.json`` stay open for probes and scrapers. Bodies are read as
JSON whatever their Content-Type.

A body larger than the limit is refused (413) as soon as that is known, from a declared
``Content-Length`` before any of it is read; the connection is kept, so the server drops
the rest of the body and the client reads the 413 rather than a reset connection. Slow
clients are timed out by the protocol ``looper serve`` runs (``protocol``: 408 past the
header or body deadline).

A background thread picks up newly promoted champions, so requests do not wait for a
model to load.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import threading
from collections.abc import Awaitable, Callable, Mapping, MutableMapping
from time import perf_counter
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from looper_pipelines.client import LooperClient, LooperInputError, UnknownUseCaseError
from looper_pipelines.client.features import MAX_SAFE_INT, FeatureEncoder
from looper_pipelines.errors import bad_text, shown, shown_key
from looper_pipelines.logs.records import use_case_of
from looper_pipelines.serving.http.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from looper_pipelines.serving.http.metrics import HttpMetrics
from looper_pipelines.serving.http.schemas import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BODY_BYTES,
    RequestError,
    build_openapi,
    check_batch,
    check_decision,
    check_observation,
)

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

TOKEN_ENV = "LOOPER_API_TOKEN"
_INT_MIN = -MAX_SAFE_INT  # the SDK's integer range for int features
_INT_MAX = MAX_SAFE_INT
_JSON_HEADERS = [(b"content-type", b"application/json")]
_CONTENT_LENGTH = b"content-length"


def _error_body(field: str, message: str) -> bytes:
    return orjson.dumps({"error": {"field": field, "message": message}})


def _decision_dict(r: Mapping[str, Any]) -> dict[str, Any]:
    """The response body of one decision, from its logged record."""
    return {
        "decision_id": r["decision_id"],
        "action": r["action"],
        "propensity": r["propensity"],
        "scores": r["scores"],
        "model_version": r["model_version"],
        "blueprint_version": r["blueprint_version"],
        "policy_version": r["policy_version"],
        "explored": r["explored"],
        "experiment_arm": r["experiment_arm"],
    }


# -- JSON parsing -------------------------------------------------------------------------
def _wide_int(text: str) -> int | float:
    """Integers outside the SDK's integer range (+-2**53) become the float they approximate
    (inf beyond float range), so an oversized number is judged as a value (the feature
    check rejects it, naming the field) and never overflows later."""
    n = int(text)
    return n if _INT_MIN <= n <= _INT_MAX else float(text)


def _check_text(value: Any) -> None:
    """Raise a 422 naming the first string (or object key), in document order, that is
    not valid Unicode text: a lone surrogate (``"\ud800"``) that no log can store."""
    stack: list[tuple[str, Any]] = [("", value)]
    while stack:
        path, v = stack.pop()
        if type(v) is str:
            problem = bad_text(v)
            if problem is not None:
                raise RequestError(422, path or "body", problem, "invalid_input")
        elif type(v) is dict:
            items = []
            for k, x in v.items():
                sub = f"{path}.{shown_key(k)}" if path else shown_key(k)
                problem = bad_text(k)
                if problem is not None:
                    raise RequestError(422, sub, f"the name {problem}", "invalid_input")
                items.append((sub, x))
            stack.extend(reversed(items))
        elif type(v) is list:
            stack.extend(reversed([(f"{path}.{i}" if path else str(i), x) for i, x in enumerate(v)]))


def parse_json(body: bytes) -> Any:
    """``orjson.loads``; on failure the standard library parser, which also reads NaN,
    Infinity and integers beyond 64 bits (those values are then rejected by the field
    checks with the field named), and strings that are not valid Unicode text (a 422 naming
    the field); anything neither reads is a 400."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as e:
        first = e
    try:
        data = json.loads(body, parse_int=_wide_int)
    except UnicodeError:
        raise RequestError(
            400, "body", "malformed JSON: invalid Unicode text", "malformed_json"
        ) from None
    except (ValueError, RecursionError):
        raise RequestError(400, "body", f"malformed JSON: {first}", "malformed_json") from None
    _check_text(data)
    return data


# -- the application ------------------------------------------------------------------------
class LooperHTTP:
    """The ASGI application (see the module docstring)."""

    def __init__(
        self,
        client: LooperClient,
        *,
        token: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        max_batch: int = DEFAULT_MAX_BATCH,
        refresh_interval_s: float = 0.5,
        owns_client: bool = False,
    ) -> None:
        if max_body_bytes < 1:
            raise ValueError("max_body_bytes must be at least 1")
        if max_batch < 1:
            raise ValueError("max_batch must be at least 1")
        self.client = client
        self.token = token or None
        self._token_bytes = token.encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.max_batch = max_batch
        self.refresh_interval_s = refresh_interval_s
        self.owns_client = owns_client
        self.metrics = HttpMetrics()
        self.blueprint_versions = {name: bp.version for name, bp in client.blueprints.items()}
        # the SDK's own feature checks, run on every batch item before any decision is made
        self._encoders = {name: FeatureEncoder(bp) for name, bp in client.blueprints.items()}
        self.openapi = build_openapi(
            client.blueprints,
            max_batch=max_batch,
            max_body_bytes=max_body_bytes,
            token_required=self.token is not None,
        )
        self._openapi_bytes = orjson.dumps(self.openapi)
        self._routes: dict[str, tuple[str, Callable[[Any], bytes]]] = {
            "/v1/decisions": ("decisions", self._decide),
            "/v1/decisions:batch": ("decisions_batch", self._decide_batch),
            "/v1/observations": ("observations", self._observe),
        }
        self.starlette = Starlette(
            routes=[
                Route("/healthz", self._healthz, methods=["GET"]),
                Route("/metrics", self._metrics, methods=["GET"]),
                Route("/openapi.json", self._openapi, methods=["GET"]),
            ],
            exception_handlers={HTTPException: self._http_exception},  # type: ignore[dict-item]
        )
        self._stop = threading.Event()
        self._refresher: threading.Thread | None = None

    # -- ASGI entry -------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path = scope["path"]
            route = self._routes.get(path)
            if route is not None:
                await self._serve(route[0], route[1], scope, receive, send)
                return
            if (
                self._token_bytes is not None
                and path.startswith("/v1/")
                and not self._authorised(scope)
            ):
                self.metrics.error("unauthorized", 401)
                await _send(
                    send, 401, _error_body("authorization", "missing or wrong bearer token")
                )
                return
        elif scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        await self.starlette(scope, receive, send)

    async def _serve(
        self,
        route: str,
        handler: Callable[[Any], bytes],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        t0 = perf_counter()
        headers = _JSON_HEADERS
        try:
            if scope["method"] != "POST":
                raise RequestError(
                    405,
                    "method",
                    f"{scope['method']} is not allowed; use POST",
                    "method_not_allowed",
                )
            if self._token_bytes is not None and not self._authorised(scope):
                raise RequestError(
                    401, "authorization", "missing or wrong bearer token", "unauthorized"
                )
            msg = await receive()
            if msg["type"] != "http.request":
                return  # the client went away
            body = msg.get("body", b"")
            if msg.get("more_body", False):
                # only a body that did not arrive at once pays for the header scan
                if self._declared_length(scope) > self.max_body_bytes:
                    raise RequestError(
                        413,
                        "body",
                        f"the body is larger than {self.max_body_bytes} bytes",
                        "body_too_large",
                    )
                body = await self._read_rest(body, receive)
                if body is None:
                    return
            if len(body) > self.max_body_bytes:
                raise RequestError(
                    413,
                    "body",
                    f"the body is larger than {self.max_body_bytes} bytes",
                    "body_too_large",
                )
            status = 200
            payload = handler(parse_json(body))
        except RequestError as e:
            status = e.status
            payload = _error_body(e.field, e.message)
            self.metrics.error(e.kind, status)
            if status == 405:
                headers = [*_JSON_HEADERS, (b"allow", b"POST")]
            # A 413 keeps the connection: the server reads and drops the rest of the body
            # (within ``looper serve``'s body timeout), so the client, still sending, gets
            # this answer; closing with the body unread would reset the connection first.
        except UnknownUseCaseError as e:
            status = 404
            payload = _error_body(e.field, e.problem)
            self.metrics.error("unknown_use_case", status)
        except LooperInputError as e:
            status = 422
            payload = _error_body(e.field, e.problem)
            self.metrics.error("invalid_input", status)
        except OSError as e:  # the log could not store the record: nothing acknowledged
            log.error("storage error on %s: %s", route, e)
            status = 503
            payload = _error_body("storage", storage_message(e))
            self.metrics.error("storage", status)
        except Exception:
            log.exception("internal error on %s", route)
            status = 500
            payload = _error_body("", "internal error")
            self.metrics.error("internal", status)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [*headers, (_CONTENT_LENGTH, b"%d" % len(payload))],
            }
        )
        await send({"type": "http.response.body", "body": payload})
        self.metrics.request(route, status, perf_counter() - t0)

    async def _read_rest(self, first: bytes, receive: Receive) -> bytes | None:
        parts = [first]
        size = len(first)
        while True:
            if size > self.max_body_bytes:
                raise RequestError(
                    413,
                    "body",
                    f"the body is larger than {self.max_body_bytes} bytes",
                    "body_too_large",
                )
            msg = await receive()
            if msg["type"] != "http.request":
                return None
            chunk = msg.get("body", b"")
            parts.append(chunk)
            size += len(chunk)
            if not msg.get("more_body", False):
                return b"".join(parts)

    @staticmethod
    def _declared_length(scope: Scope) -> int:
        for k, v in scope["headers"]:
            if k == b"content-length":
                try:
                    return int(v)
                except ValueError:
                    return -1
        return -1

    def _authorised(self, scope: Scope) -> bool:
        token = self._token_bytes
        assert token is not None
        for k, v in scope["headers"]:
            if k == b"authorization":
                return v[:7].lower() == b"bearer " and hmac.compare_digest(v[7:].strip(), token)
        return False

    # -- the /v1 handlers (synchronous; errors are raised) ------------------------------------
    def _decide(self, data: Any) -> bytes:
        use_case, subject_id, features = check_decision(data)
        record = self.client.decide_record(use_case, subject_id, features)
        m = self.metrics.decisions
        m[use_case] = m.get(use_case, 0) + 1
        return orjson.dumps(_decision_dict(record))

    def _decide_batch(self, data: Any) -> bytes:
        """All or nothing: every item is validated (envelope, use case, features) before
        any decision is made, so a rejected batch logs nothing."""
        items = check_batch(data, self.max_batch)
        checked: list[tuple[str, str, dict[str, Any]]] = []
        encoders = self._encoders
        for i, item in enumerate(items):
            prefix = f"requests.{i}."
            use_case, subject_id, features = check_decision(item, prefix)
            encoder = encoders.get(use_case)
            if encoder is None:
                raise RequestError(
                    404,
                    prefix + "use_case",
                    f"no blueprint named {shown(use_case)}; known: {sorted(encoders)}",
                    "unknown_use_case",
                )
            try:
                encoder.normalise(features)
            except LooperInputError as e:
                raise RequestError(422, prefix + e.field, e.problem, "invalid_input") from None
            checked.append((use_case, subject_id, features))
        decide = self.client.decide_record
        out = [_decision_dict(decide(uc, sid, f)) for uc, sid, f in checked]
        counts: dict[str, int] = {}
        for uc, _, _ in checked:
            counts[uc] = counts.get(uc, 0) + 1
        for uc, n in counts.items():
            self.metrics.decision(uc, n)
        return orjson.dumps({"decisions": out})

    def _observe(self, data: Any) -> bytes:
        decision_id, name, value, observation_id, use_case = check_observation(data)
        try:
            oid = self.client.log_observation(
                decision_id, name, value, observation_id, use_case=use_case
            )
        except UnknownUseCaseError as e:
            field = "use_case" if use_case else "decision_id"
            raise RequestError(404, field, e.problem, "unknown_use_case") from None
        self.metrics.observation(use_case or use_case_of(decision_id) or "")
        return orjson.dumps({"observation_id": oid})

    # -- the Starlette routes -----------------------------------------------------------------
    def health(self) -> dict[str, Any]:
        """``status`` is ``degraded`` when a use case does not serve its published version
        (it did not verify); each use case says what serves instead and why."""
        use_cases = {}
        for name in self.client.use_cases:
            dep = self.client.deployment(name)
            serving = self.client.serving_status(name)
            use_cases[name] = {
                "blueprint_version": self.blueprint_versions[name],
                "model_version": dep.model_version,
                "policy_version": dep.policy_version,
                **serving.to_dict(),
            }
        degraded = any(u["status"] == "degraded" for u in use_cases.values())
        return {"status": "degraded" if degraded else "ok", "use_cases": use_cases}

    async def _healthz(self, request: Request) -> Response:
        return Response(orjson.dumps(self.health()), media_type="application/json")

    async def _metrics(self, request: Request) -> Response:
        deployments = [
            (name, self.blueprint_versions[name], dep.model_version, dep.policy_version)
            for name in self.client.use_cases
            for dep in (self.client.deployment(name),)
        ]
        serving = [(name, self.client.serving_status(name)) for name in self.client.use_cases]
        return Response(
            self.metrics.render(deployments, serving),
            headers={"content-type": METRICS_CONTENT_TYPE},
        )

    async def _openapi(self, request: Request) -> Response:
        return Response(self._openapi_bytes, media_type="application/json")

    async def _http_exception(self, request: Request, exc: HTTPException) -> Response:
        kind = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
        self.metrics.error(kind, exc.status_code)
        field = "method" if exc.status_code == 405 else "path"
        return Response(
            _error_body(field, str(exc.detail)),
            status_code=exc.status_code,
            headers=dict(exc.headers or {}),
            media_type="application/json",
        )

    # -- lifecycle --------------------------------------------------------------------------
    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            msg = await receive()
            if msg["type"] == "lifespan.startup":
                try:
                    self.start()
                except Exception as e:
                    await send({"type": "lifespan.startup.failed", "message": str(e)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif msg["type"] == "lifespan.shutdown":
                self.close()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def start(self) -> None:
        """Start the thread that picks up newly promoted champions."""
        if self._refresher is None and self.refresh_interval_s > 0:
            self._stop.clear()
            self._refresher = threading.Thread(
                target=self._refresh_loop, name="looper-http-refresh", daemon=True
            )
            self._refresher.start()

    def _refresh_loop(self) -> None:
        while not self._stop.wait(self.refresh_interval_s):
            try:
                self.client.refresh()
            except Exception:
                log.exception("refreshing deployments failed")

    def close(self) -> None:
        self._stop.set()
        if self._refresher is not None:
            self._refresher.join(timeout=5)
            self._refresher = None
        if self.owns_client:
            self.client.close()


def storage_message(exc: OSError) -> str:
    """One line naming why the log could not store a record (bounded in size)."""
    cause = " ".join(str(exc).split())[:300] or type(exc).__name__
    return f"the decision log cannot store the record, nothing was acknowledged; retry later: {cause}"


async def _send(send: Send, status: int, payload: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [*_JSON_HEADERS, (_CONTENT_LENGTH, b"%d" % len(payload))],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def create_app(
    client: LooperClient | None = None,
    *,
    home: str | os.PathLike[str] | None = None,
    token: str | None = None,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    max_batch: int = DEFAULT_MAX_BATCH,
    refresh_interval_s: float = 0.5,
    **client_kwargs: Any,
) -> LooperHTTP:
    """The decision service over ``client``, or over a new ``LooperClient.local(home,
    **client_kwargs)`` that the application then owns (closed at shutdown). ``token``:
    bearer token required on ``/v1/*`` (None: open)."""
    owns = client is None
    if client is None:
        client = LooperClient.local(home, **client_kwargs)
    return LooperHTTP(
        client,
        token=token,
        max_body_bytes=max_body_bytes,
        max_batch=max_batch,
        refresh_interval_s=refresh_interval_s,
        owns_client=owns,
    )


def app_from_env() -> LooperHTTP:
    """Factory for ``uvicorn --factory`` and for each worker of ``looper serve --workers N``:
    configured by ``LOOPER_HOME``, ``LOOPER_API_TOKEN``, ``LOOPER_HTTP_MAX_BODY_BYTES``,
    ``LOOPER_HTTP_MAX_BATCH`` and ``LOOPER_LOG_DURABILITY``."""
    env = os.environ
    return create_app(
        home=env.get("LOOPER_HOME"),
        token=env.get(TOKEN_ENV) or None,
        max_body_bytes=int(env.get("LOOPER_HTTP_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
        max_batch=int(env.get("LOOPER_HTTP_MAX_BATCH", DEFAULT_MAX_BATCH)),
        log_durability=env.get("LOOPER_LOG_DURABILITY", "default"),
    )
