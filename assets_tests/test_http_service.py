"""The HTTP decision service, served for real by uvicorn on a loopback port.

One server (in a thread, with a token and small limits) is shared by the module; the
``looper serve`` command is started once in a subprocess. The property-based test drives
every operation of the service's own OpenAPI document with schemathesis and must find no
5xx and no response that breaks the document.
"""

from __future__ import annotations

import asyncio
import math
import os
import re
import signal
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import schemathesis
import uvicorn
from hypothesis import HealthCheck, settings

from assets_tests.conftest import start_looper_serve, stop_process
from looper_pipelines.blueprints import load_catalog
from looper_pipelines.logs import read_decisions, read_observations
from looper_pipelines.serving.http import LooperHTTP, build_openapi, create_app
from looper_pipelines.serving.http.protocol import LooperHttpProtocol, protocol_class

TOKEN = "test-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
MAX_BODY = 16 * 1024
MAX_BATCH = 8
UC = "notification_send"
FEATURES = {"tenure_days": 12.5, "sessions_last_7d": 3, "hour_of_day": 20, "platform": "ios"}


@contextmanager
def serve(app: Any, http: type[asyncio.Protocol] = LooperHttpProtocol) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread on a free loopback port, over the protocol
    ``looper serve`` runs (read timeouts); yields the base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on", http=http)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=15)
        sock.close()


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("looper_home")


@pytest.fixture(scope="module")
def service(home: Path) -> Iterator[tuple[str, LooperHTTP]]:
    app = create_app(home=home, token=TOKEN, max_body_bytes=MAX_BODY, max_batch=MAX_BATCH, seed=0)
    with serve(app) as url:
        yield url, app


@pytest.fixture(scope="module")
def base_url(service: tuple[str, LooperHTTP]) -> str:
    return service[0]


@pytest.fixture()
def http(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=10) as c:
        yield c


def decide(http: httpx.Client, **overrides: Any) -> httpx.Response:
    body = {"use_case": UC, "subject_id": "user-1", "features": FEATURES} | overrides
    return http.post("/v1/decisions", json=body)


def assert_error(r: httpx.Response, status: int, field: str) -> str:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    err = r.json()["error"]
    assert err["field"] == field, err
    assert isinstance(err["message"], str) and err["message"]
    return err["message"]


# -- round trips ----------------------------------------------------------------------------
def test_decision_round_trip_is_logged(http: httpx.Client, home: Path) -> None:
    r = decide(http, subject_id="round-trip")
    assert r.status_code == 200, r.text
    d = r.json()
    assert set(d) == {
        "decision_id",
        "action",
        "propensity",
        "scores",
        "model_version",
        "blueprint_version",
        "policy_version",
        "explored",
        "experiment_arm",
    }
    assert d["action"] in ("dont_send", "send")
    assert 0.0 < d["propensity"] <= 1.0
    assert d["decision_id"].endswith(f"-{UC}")
    logged = read_decisions(home, UC).filter(decision_id=d["decision_id"]).to_dicts()
    assert len(logged) == 1
    row = logged[0]
    assert row["subject_id"] == "round-trip"
    assert row["action"] == d["action"]
    assert math.isclose(row["propensity"], d["propensity"])
    assert row["policy_version"] == d["policy_version"]
    assert row["blueprint_version"] == d["blueprint_version"]


def test_observation_round_trip_and_idempotency(http: httpx.Client, home: Path) -> None:
    decision_id = decide(http).json()["decision_id"]
    r = http.post(
        "/v1/observations", json={"decision_id": decision_id, "name": "click", "value": 1}
    )
    assert r.status_code == 200, r.text
    oid = r.json()["observation_id"]
    body = {
        "decision_id": decision_id,
        "name": "unsubscribe",
        "value": False,
        "observation_id": "obs-once",
    }
    assert http.post("/v1/observations", json=body).json() == {"observation_id": "obs-once"}
    assert http.post("/v1/observations", json=body).json() == {"observation_id": "obs-once"}
    obs = read_observations(home, UC).filter(decision_id=decision_id)
    assert sorted(obs["observation_id"].to_list()) == sorted([oid, "obs-once"])
    assert dict(zip(obs["name"], obs["value"], strict=True)) == {"click": 1.0, "unsubscribe": 0.0}


def test_batch(http: httpx.Client, home: Path) -> None:
    good = {"use_case": UC, "subject_id": "b-0", "features": FEATURES}
    other = {
        "use_case": "item_recommendation",
        "subject_id": "b-1",
        "features": {"segment": "tech"},
    }
    r = http.post("/v1/decisions:batch", json={"requests": [good, other, good]})
    assert r.status_code == 200, r.text
    out = r.json()["decisions"]
    assert [d["decision_id"].rsplit("-", 1)[1] for d in out] == [UC, "item_recommendation", UC]
    assert out[1]["action"].startswith("item_")
    logged = read_decisions(home, UC).filter(subject_id="b-0")
    assert sorted(logged["decision_id"].to_list()) == sorted(
        [out[0]["decision_id"], out[2]["decision_id"]]
    )
    # all or nothing: one bad item rejects the batch, names the item and field, logs nothing
    bad_value = {"use_case": UC, "subject_id": "b-bad", "features": FEATURES | {"tenure_days": -1}}
    r = http.post(
        "/v1/decisions:batch", json={"requests": [good | {"subject_id": "b-bad"}, bad_value]}
    )
    assert_error(r, 422, "requests.1.features.tenure_days")
    unknown = {"use_case": "no_such_case", "subject_id": "b-bad", "features": {}}
    assert_error(
        http.post("/v1/decisions:batch", json={"requests": [good, unknown]}),
        404,
        "requests.1.use_case",
    )
    bad_envelope = {"use_case": UC, "features": FEATURES}
    assert_error(
        http.post("/v1/decisions:batch", json={"requests": [good, bad_envelope]}),
        422,
        "requests.1.subject_id",
    )
    huge = good | {"features": FEATURES | {"sessions_last_7d": 2**64}}
    r = http.post("/v1/decisions:batch", json={"requests": [good, huge]})
    assert_error(r, 422, "requests.1.features.sessions_last_7d")
    assert read_decisions(home, UC).filter(subject_id="b-bad").height == 0
    assert http.post("/v1/decisions:batch", json={"requests": []}).json() == {"decisions": []}


def test_batch_limit(http: httpx.Client) -> None:
    item = {"use_case": UC, "subject_id": "x", "features": FEATURES}
    assert (
        http.post("/v1/decisions:batch", json={"requests": [item] * MAX_BATCH}).status_code == 200
    )
    r = http.post("/v1/decisions:batch", json={"requests": [item] * (MAX_BATCH + 1)})
    assert str(MAX_BATCH) in assert_error(r, 422, "requests")
    assert_error(http.post("/v1/decisions:batch", json={"requests": {}}), 422, "requests")
    assert_error(http.post("/v1/decisions:batch", json={}), 422, "requests")


def test_concurrent_decisions_are_all_logged(base_url: str, home: Path) -> None:
    async def run() -> list[str]:
        async with httpx.AsyncClient(base_url=base_url, headers=AUTH, timeout=30) as c:
            body = {"use_case": UC, "subject_id": "concurrent", "features": FEATURES}
            rs = await asyncio.gather(*(c.post("/v1/decisions", json=body) for _ in range(200)))
        assert all(r.status_code == 200 for r in rs)
        return [r.json()["decision_id"] for r in rs]

    ids = asyncio.run(run())
    assert len(set(ids)) == 200
    logged = read_decisions(home, UC).filter(subject_id="concurrent")
    assert set(logged["decision_id"].to_list()) == set(ids)


# -- auth and limits ----------------------------------------------------------------------
def test_token(base_url: str) -> None:
    body = {"use_case": UC, "subject_id": "u", "features": FEATURES}
    with httpx.Client(base_url=base_url, timeout=10) as anon:
        assert_error(anon.post("/v1/decisions", json=body), 401, "authorization")
        assert_error(anon.post("/v1/observations", json={}), 401, "authorization")
        assert_error(anon.post("/v1/decisions:batch", json={"requests": []}), 401, "authorization")
        wrong = {"Authorization": "Bearer nope"}
        assert_error(anon.post("/v1/decisions", json=body, headers=wrong), 401, "authorization")
        assert_error(
            anon.post("/v1/decisions", json=body, headers={"Authorization": TOKEN}),
            401,
            "authorization",
        )
        assert_error(anon.get("/v1/elsewhere"), 401, "authorization")
        assert anon.post("/v1/decisions", json=body, headers=AUTH).status_code == 200
        assert (
            anon.post(
                "/v1/decisions", json=body, headers={"authorization": f"bearer {TOKEN}"}
            ).status_code
            == 200
        )
        # documented as open: health, metrics and the API description
        assert anon.get("/healthz").status_code == 200
        assert anon.get("/metrics").status_code == 200
        assert anon.get("/openapi.json").status_code == 200


def test_body_size_limit(http: httpx.Client) -> None:
    big = {"use_case": UC, "subject_id": "x" * (MAX_BODY + 10), "features": FEATURES}
    assert_error(http.post("/v1/decisions", json=big), 413, "body")
    # a declared length over the limit is refused before the body is read
    assert_error(http.post("/v1/decisions", content=b"x" * 2_000_000), 413, "body")

    def chunks() -> Iterator[bytes]:  # no content-length: streamed with chunked encoding
        yield b'{"use_case": "notification_send", "subject_id": "'
        for _ in range(64):
            yield b"y" * 1024
        yield b'"}'

    assert_error(http.post("/v1/decisions", content=chunks()), 413, "body")
    assert decide(http).status_code == 200  # and the server goes on serving


def _post_raw(sock: socket.socket, body: bytes, *, chunked: bool = False) -> tuple[int, bytes]:
    """POST ``body`` to /v1/decisions the way simple clients do (send the whole request,
    then read the answer) on an open connection; the status and the response body."""
    head = b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + TOKEN.encode()
    if chunked:
        step = 2**16
        framed = b"".join(b"%x\r\n%s\r\n" % (len(body[i : i + step]), body[i : i + step]) for i in range(0, len(body), step))
        sock.sendall(head + b"\r\nTransfer-Encoding: chunked\r\n\r\n" + framed + b"0\r\n\r\n")
    else:
        sock.sendall(head + b"\r\nContent-Length: %d\r\n\r\n" % len(body) + body)
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head_bytes, _, rest = data.partition(b"\r\n\r\n")
    length = int(re.search(rb"(?i)content-length: *(\d+)", head_bytes).group(1))  # type: ignore[union-attr]
    while len(rest) < length:
        rest += sock.recv(65536)
    return int(head_bytes.split()[1]), rest


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_a_10_mb_body_gets_413_not_a_reset_connection(base_url: str, chunked: bool) -> None:
    """A client that sends a 10 MB body and then reads gets a 413 with a one-line error
    naming the limit, not a reset connection; the connection and the server stay usable."""
    port = int(base_url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        status, body = _post_raw(sock, b"x" * (10 * 2**20), chunked=chunked)
        assert status == 413, body[:300]
        error = orjson.loads(body)["error"]
        assert error["field"] == "body" and str(MAX_BODY) in error["message"]
        assert "\n" not in error["message"]
        # the same connection goes on
        ok = orjson.dumps({"use_case": UC, "subject_id": "after-413", "features": FEATURES})
        status, body = _post_raw(sock, ok)
        assert status == 200, body[:300]
    with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as http:
        r = http.post("/v1/decisions", content=b"x" * (10 * 2**20))
        assert_error(r, 413, "body")
        assert decide(http).status_code == 200


def _read_until_closed(sock: socket.socket, limit_s: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes, and how long that took."""
    t0 = time.monotonic()
    sock.settimeout(limit_s)
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    return data, time.monotonic() - t0


def _timeout_error(data: bytes) -> dict[str, str]:
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408"), data[:200]
    return orjson.loads(body)["error"]


@pytest.mark.parametrize("impl", ["auto", "h11"])
def test_slow_clients_are_timed_out(home: Path, impl: str) -> None:
    """A client that does not finish its headers, or its body, within the read timeouts
    gets a 408 naming the part and the limit and is disconnected; a client that trickles
    its headers byte by byte does not extend the deadline; others are served meanwhile."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    from looper_pipelines.serving.http.protocol import ReadTimeouts

    proto = protocol_class(header_timeout_s=0.5, body_timeout_s=0.8)
    if impl == "h11":
        proto = type("H11WithTimeouts", (ReadTimeouts, H11Protocol), {"header_timeout_s": 0.5, "body_timeout_s": 0.8})
    app = create_app(home=home, token=TOKEN, max_body_bytes=MAX_BODY, max_batch=MAX_BATCH, seed=0)
    with serve(app, http=proto) as url:
        port = int(url.rsplit(":", 1)[1])
        idle, slow_head, trickle, slow_body = (socket.create_connection(("127.0.0.1", port)) for _ in range(4))
        with idle, slow_head, trickle, slow_body:
            slow_head.sendall(b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\n")
            slow_body.sendall(
                b"POST /v1/decisions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                + TOKEN.encode()
                + b"\r\nContent-Length: 100\r\n\r\n{\"use_case\""
            )
            for b in b"GET /healthz HTTP/1.1\r\n":  # one byte every 0.1 s: would take 2.4 s
                try:
                    trickle.sendall(bytes([b]))
                except OSError:
                    break  # closed by the server, as it should be
                time.sleep(0.1)
            # meanwhile the server serves others
            assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200
            data, _ = _read_until_closed(trickle, 5)
            assert _timeout_error(data)["field"] == "headers"
            for sock, part, limit in ((slow_head, "headers", "0.5"), (slow_body, "body", "0.8")):
                data, took = _read_until_closed(sock, 5)
                message = f"the request {part} did not arrive within {limit} s"
                assert _timeout_error(data) == {"field": part, "message": message}
                assert took < 3
            assert _read_until_closed(idle, 5)[0] == b""  # connected, sent nothing: closed
        with httpx.Client(base_url=url, headers=AUTH, timeout=10) as c:
            assert decide(c).status_code == 200


# -- field-level errors --------------------------------------------------------------------
ERROR_CASES: list[tuple[str, str, Any, int, str]] = [
    (
        "unknown feature",
        "/v1/decisions",
        {"features": FEATURES | {"shoe_size": 42}},
        422,
        "features.shoe_size",
    ),
    (
        "wrong type",
        "/v1/decisions",
        {"features": FEATURES | {"hour_of_day": "noon"}},
        422,
        "features.hour_of_day",
    ),
    (
        "category",
        "/v1/decisions",
        {"features": FEATURES | {"platform": "palm"}},
        422,
        "features.platform",
    ),
    (
        "out of range",
        "/v1/decisions",
        {"features": FEATURES | {"hour_of_day": 24}},
        422,
        "features.hour_of_day",
    ),
    (
        "missing required feature",
        "/v1/decisions",
        {"features": {k: v for k, v in FEATURES.items() if k != "tenure_days"}},
        422,
        "features.tenure_days",
    ),
    (
        "nested feature",
        "/v1/decisions",
        {"features": FEATURES | {"platform": ["ios"]}},
        422,
        "features.platform",
    ),
    (
        "int beyond 2**53",
        "/v1/decisions",
        {"features": FEATURES | {"sessions_last_7d": -(2**60)}},
        422,
        "features.sessions_last_7d",
    ),
    (
        "int beyond 64 bits",
        "/v1/decisions",
        {"features": FEATURES | {"sessions_last_7d": 1e300}},
        422,
        "features.sessions_last_7d",
    ),
    ("unknown use case", "/v1/decisions", {"use_case": "no_such_case"}, 404, "use_case"),
    ("use case not a string", "/v1/decisions", {"use_case": 7}, 422, "use_case"),
    ("empty subject", "/v1/decisions", {"subject_id": ""}, 422, "subject_id"),
    ("features not an object", "/v1/decisions", {"features": [1, 2]}, 422, "features"),
    ("extra field", "/v1/decisions", {"priority": "high"}, 422, "priority"),
]


@pytest.mark.parametrize(
    ("path", "overrides", "status", "field"),
    [c[1:] for c in ERROR_CASES],
    ids=[c[0] for c in ERROR_CASES],
)
def test_decision_field_errors(
    http: httpx.Client, path: str, overrides: Any, status: int, field: str
) -> None:
    body = {"use_case": UC, "subject_id": "u", "features": FEATURES} | overrides
    assert_error(http.post(path, json=body), status, field)


RAW_CASES: list[tuple[str, str, bytes, int, str]] = [
    ("malformed JSON", "/v1/decisions", b'{"use_case": "notification_send",', 400, "body"),
    ("empty body", "/v1/decisions", b"", 400, "body"),
    ("not UTF-8", "/v1/decisions", b'{"use_case": "\xff"}', 400, "body"),
    ("lone surrogate", "/v1/decisions", b'{"use_case": "\\ud800", "subject_id": "u"}', 422, "use_case"),
    (
        "lone surrogate in a subject id",
        "/v1/decisions",
        b'{"use_case": "notification_send", "subject_id": "u\\ud800", "features": {"tenure_days": 1, "hour_of_day": 1}}',
        422,
        "subject_id",
    ),
    (
        "lone surrogate in an observation id",
        "/v1/observations",
        b'{"decision_id": "abc", "name": "click", "value": 1, "observation_id": "\\udc00x"}',
        422,
        "observation_id",
    ),
    (
        "integer value beyond the float range",
        "/v1/observations",
        b'{"decision_id": "01a2247b6745608720f900016161-notification_send", "name": "click", "value": 1'
        + b"0" * 400
        + b"}",
        422,
        "value",
    ),
    ("array body", "/v1/decisions", b"[]", 422, "body"),
    (
        "NaN feature",
        "/v1/decisions",
        b'{"use_case": "notification_send", "subject_id": "u", "features": {"tenure_days": NaN, "hour_of_day": 1}}',
        422,
        "features.tenure_days",
    ),
    (
        "huge integer feature",
        "/v1/decisions",
        b'{"use_case": "notification_send", "subject_id": "u", "features": {"tenure_days": 1'
        + b"0" * 400
        + b', "hour_of_day": 1}}',
        422,
        "features.tenure_days",
    ),
    (
        "non-finite observation value",
        "/v1/observations",
        b'{"decision_id": "01a2247b6745608720f900016161-notification_send", "name": "click", "value": Infinity}',
        422,
        "value",
    ),
    (
        "NaN observation value",
        "/v1/observations",
        b'{"decision_id": "01a2247b6745608720f900016161-notification_send", "name": "click", "value": NaN}',
        422,
        "value",
    ),
    (
        "unknown label name",
        "/v1/observations",
        b'{"decision_id": "01a2247b6745608720f900016161-notification_send", "name": "purchase", "value": 1}',
        422,
        "name",
    ),
    (
        "binary label value",
        "/v1/observations",
        b'{"decision_id": "01a2247b6745608720f900016161-notification_send", "name": "click", "value": 0.5}',
        422,
        "value",
    ),
    (
        "foreign decision id",
        "/v1/observations",
        b'{"decision_id": "abc", "name": "click", "value": 1}',
        422,
        "decision_id",
    ),
    (
        "unknown use case of a decision id",
        "/v1/observations",
        b'{"decision_id": "01a2247b6745608720f900016161-elsewhere", "name": "click", "value": 1}',
        404,
        "decision_id",
    ),
    (
        "unknown explicit use case",
        "/v1/observations",
        b'{"decision_id": "abc", "name": "click", "value": 1, "use_case": "elsewhere"}',
        404,
        "use_case",
    ),
    ("missing value", "/v1/observations", b'{"decision_id": "abc", "name": "click"}', 422, "value"),
    (
        "string value",
        "/v1/observations",
        b'{"decision_id": "abc", "name": "click", "value": "1"}',
        422,
        "value",
    ),
    (
        "empty observation id",
        "/v1/observations",
        b'{"decision_id": "abc", "name": "click", "value": 1, "observation_id": ""}',
        422,
        "observation_id",
    ),
    ("malformed batch", "/v1/decisions:batch", b'{"requests": [', 400, "body"),
]


@pytest.mark.parametrize(
    ("path", "body", "status", "field"), [c[1:] for c in RAW_CASES], ids=[c[0] for c in RAW_CASES]
)
def test_raw_body_errors(
    http: httpx.Client, path: str, body: bytes, status: int, field: str
) -> None:
    r = http.post(path, content=body, headers={"content-type": "application/json"})
    assert_error(r, status, field)


def test_wrong_method_and_unknown_route(http: httpx.Client) -> None:
    r = http.get("/v1/decisions")
    assert_error(r, 405, "method")
    assert r.headers["allow"] == "POST"
    assert_error(http.get("/nowhere"), 404, "path")
    assert_error(http.post("/healthz"), 405, "method")


# -- health, metrics and the API description --------------------------------------------
def test_healthz(http: httpx.Client) -> None:
    h = http.get("/healthz").json()
    assert h["status"] == "ok"
    assert set(h["use_cases"]) >= {UC, "item_recommendation"}
    assert set(h["use_cases"][UC]) == {
        "blueprint_version", "model_version", "policy_version",
        "status", "state", "published_version", "serving_version", "rejected_version", "reason",
    }  # fmt: skip
    # nothing published: the default action serves, and that is not a degraded state
    assert h["use_cases"][UC]["status"] == "ok" and h["use_cases"][UC]["state"] == "ok"
    assert h["use_cases"][UC]["published_version"] is None and h["use_cases"][UC]["reason"] is None


_SAMPLE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*",?)*\})? (\S+)$'
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    """A strict reader of the text exposition format: every line is a comment or a sample."""
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    types: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split(" ", 3)
            assert kind in ("counter", "gauge", "histogram", "summary", "untyped")
            types[name] = kind
            continue
        if line.startswith("#") or not line:
            continue
        m = _SAMPLE.match(line)
        assert m, f"not a sample line: {line!r}"
        name, labels, value = m.group(1), m.group(2) or "", m.group(3)
        family = re.sub(r"_(bucket|sum|count)$", "", name) if name not in types else name
        assert family in types, f"{name} has no TYPE line"
        out.setdefault(name, []).append((dict(_LABEL.findall(labels)), float(value)))
    return out


def decisions_total(http: httpx.Client) -> float:
    samples = parse_prometheus(http.get("/metrics").text)
    return sum(
        v for labels, v in samples.get("looper_decisions_total", []) if labels["use_case"] == UC
    )


def test_metrics(http: httpx.Client) -> None:
    before = decisions_total(http)
    for _ in range(5):
        assert decide(http).status_code == 200
    item = {"use_case": UC, "subject_id": "m", "features": FEATURES}
    assert (
        http.post("/v1/decisions:batch", json={"requests": [item, item, item]}).status_code == 200
    )
    assert decide(http, use_case="no_such_case").status_code == 404
    r = http.get("/metrics")
    assert r.headers["content-type"].startswith("text/plain")
    samples = parse_prometheus(r.text)
    assert decisions_total(http) - before == 8
    buckets = [
        (labels["le"], v)
        for labels, v in samples["looper_http_request_duration_seconds_bucket"]
        if labels["route"] == "decisions"
    ]
    counts = [v for _, v in buckets]
    assert counts == sorted(counts) and buckets[-1][0] == "+Inf"
    (count,) = [
        v
        for labels, v in samples["looper_http_request_duration_seconds_count"]
        if labels["route"] == "decisions"
    ]
    assert count == counts[-1] > 0
    errors = {
        (labels["kind"], labels["status"]): v for labels, v in samples["looper_http_errors_total"]
    }
    assert errors[("unknown_use_case", "404")] >= 1
    info = {labels["use_case"]: labels for labels, v in samples["looper_deployment_info"] if v == 1}
    assert info[UC]["model_version"] == "none"  # cold start: no champion published in this home
    assert info[UC]["policy_version"] and info[UC]["blueprint_version"]
    for flag in ("looper_deployment_degraded", "looper_deployment_no_verified_version"):
        assert {labels["use_case"]: v for labels, v in samples[flag]}[UC] == 0


def test_openapi_is_valid(base_url: str) -> None:
    schema = schemathesis.openapi.from_url(f"{base_url}/openapi.json")
    schema.validate()  # against the OpenAPI 3.1 meta-schema
    doc = schema.raw_schema
    assert doc["openapi"].startswith("3.")
    ops = {(op.ok().method.upper(), op.ok().path) for op in schema.get_all_operations()}
    assert {
        ("POST", "/v1/decisions"),
        ("POST", "/v1/decisions:batch"),
        ("POST", "/v1/observations"),
        ("GET", "/healthz"),
        ("GET", "/metrics"),
    } <= ops
    assert "/openapi.json" in doc["paths"]
    features = doc["components"]["schemas"]["NotificationSendFeatures"]
    assert features["required"] == ["tenure_days", "hour_of_day"]
    assert (
        doc["components"]["schemas"]["BatchDecisionRequest"]["properties"]["requests"]["maxItems"]
        == MAX_BATCH
    )
    assert doc["paths"]["/v1/decisions"]["post"]["security"] == [{"bearerAuth": []}]


# -- property-based: the service against its own OpenAPI document ---------------------------
# The document the module's server serves (its use cases are the packaged catalog, as the
# fresh home registers none); schemathesis needs it at collection time, before the server
# is up, and ``test_served_document_is_the_one_tested`` holds the two equal.
DOCUMENT = build_openapi(
    load_catalog(), max_batch=MAX_BATCH, max_body_bytes=MAX_BODY, token_required=True
)
schema = schemathesis.openapi.from_dict(DOCUMENT)


def test_served_document_is_the_one_tested(http: httpx.Client) -> None:
    assert http.get("/openapi.json").json() == orjson.loads(orjson.dumps(DOCUMENT))


# bounded and reproducible by default; LOOPER_HTTP_FUZZ_EXAMPLES=2000 for a deeper random run
FUZZ_EXAMPLES = int(os.environ.get("LOOPER_HTTP_FUZZ_EXAMPLES", "50"))


@schema.parametrize()
@settings(
    max_examples=FUZZ_EXAMPLES,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    derandomize="LOOPER_HTTP_FUZZ_EXAMPLES" not in os.environ,
)
def test_api_conforms_to_its_openapi_document(case: Any, base_url: str) -> None:
    case.call_and_validate(base_url=base_url, headers=AUTH)


def test_server_survived(http: httpx.Client) -> None:
    assert http.get("/healthz").status_code == 200
    assert decide(http).status_code == 200


# -- the command line ----------------------------------------------------------------------
def test_looper_serve_command(tmp_path: Path) -> None:
    env = os.environ | {"LOOPER_API_TOKEN": "from-env"}
    proc, url = start_looper_serve(tmp_path, "--header-timeout", "1", env=env)
    port = httpx.URL(url).port
    try:
        body = {"use_case": UC, "subject_id": "cli", "features": FEATURES}
        assert httpx.post(f"{url}/v1/decisions", json=body).status_code == 401
        r = httpx.post(
            f"{url}/v1/decisions", json=body, headers={"Authorization": "Bearer from-env"}
        )
        assert r.status_code == 200, r.text
        decision_id = r.json()["decision_id"]
        with socket.create_connection(("127.0.0.1", port)) as slow:  # --header-timeout 1
            slow.sendall(b"GET /healthz HTTP/1.1\r\n")
            data, took = _read_until_closed(slow, 10)
            assert _timeout_error(data)["field"] == "headers" and 0.9 < took < 5
    finally:
        out = stop_process(proc)
    # uvicorn shuts down gracefully, then re-raises the signal it caught
    assert proc.returncode in (0, -signal.SIGTERM), out
    assert "Application shutdown complete" in out
    assert "bearer token required" in out
    assert read_decisions(tmp_path, UC)["decision_id"].to_list() == [decision_id]
