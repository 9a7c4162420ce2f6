"""The HTTP/1.1 protocol ``looper serve`` runs: uvicorn's, with read timeouts.

uvicorn closes idle keep-alive connections, but waits for ever on a client that sends
its request slowly: a few such clients hold connections (and, for the body, a pending
request) open indefinitely. This protocol adds two deadlines:

- the **header timeout** (``header_timeout_s``, default 10 s): from a connection's first
  byte, or the first byte of its next request, to the end of the request's headers;
- the **body timeout** (``body_timeout_s``, default 30 s): from the end of the headers to
  the end of the body, including a body the service does not read (after a 413 the rest
  of the body is read and dropped, so the client gets the answer instead of a reset
  connection, but for no longer than this).

A request past a deadline gets ``408`` with a one-line JSON error naming ``headers`` or
``body`` and the limit, and the connection is closed (when the response had already begun,
or the request had not, the connection is just closed). The deadlines come from the class
attributes, else from ``LOOPER_HTTP_HEADER_TIMEOUT_S`` and ``LOOPER_HTTP_BODY_TIMEOUT_S``
(how ``looper serve --workers N`` passes them to its worker processes), else the
defaults. ``protocol_class`` returns the class to hand to uvicorn (``http=``); it works
over uvicorn's httptools and h11 implementations alike, using only what both share (the
current request cycle's ``more_body`` and ``response_*`` flags).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import orjson
from uvicorn.protocols.http.auto import AutoHTTPProtocol

HEADER_TIMEOUT_ENV = "LOOPER_HTTP_HEADER_TIMEOUT_S"
BODY_TIMEOUT_ENV = "LOOPER_HTTP_BODY_TIMEOUT_S"
DEFAULT_HEADER_TIMEOUT_S = 10.0
DEFAULT_BODY_TIMEOUT_S = 30.0


def timeout_setting(value: float | None, env: str, default: float) -> float:
    """``value``, else the float in environment variable ``env``, else ``default``."""
    if value is None:
        text = os.environ.get(env)
        value = float(text) if text else default
    if not value > 0:
        raise ValueError(f"{env.lower().removeprefix('looper_http_')} must be > 0, got {value!r}")
    return float(value)


def _timeout_response(part: str, seconds: float) -> bytes:
    body = orjson.dumps(
        {
            "error": {
                "field": part,
                "message": f"the request {part} did not arrive within {seconds:g} s",
            }
        }
    )
    head = (
        b"HTTP/1.1 408 Request Timeout\r\ncontent-type: application/json\r\n"
        b"connection: close\r\ncontent-length: %d\r\n\r\n" % len(body)
    )
    return head + body


class ReadTimeouts:
    """Mixin over a uvicorn HTTP/1.1 protocol class: the header and body deadlines."""

    header_timeout_s: float | None = None  # None: from the environment, else the default
    body_timeout_s: float | None = None

    # attributes of the uvicorn protocol this mixes into
    cycle: Any
    loop: asyncio.AbstractEventLoop
    transport: asyncio.Transport

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._header_s = timeout_setting(
            self.header_timeout_s, HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT_S
        )
        self._body_s = timeout_setting(
            self.body_timeout_s, BODY_TIMEOUT_ENV, DEFAULT_BODY_TIMEOUT_S
        )
        self._timer: asyncio.TimerHandle | None = None
        self._seen_cycle: Any = None  # the last request whose headers were complete
        self._timed: Any = None  # that request, while its body is awaited
        self._partial = False  # bytes of a request whose headers are not complete yet

    # -- the protocol callbacks --------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)  # type: ignore[misc]
        self._arm(self._header_s, self._headers_late)

    def data_received(self, data: bytes) -> None:
        super().data_received(data)  # type: ignore[misc]
        if self.transport.is_closing():
            self._cancel()
            return
        cycle = self.cycle
        if cycle is not None and cycle is not self._seen_cycle:  # a request's headers are in
            self._seen_cycle = cycle
            self._partial = False
            self._timed = cycle if cycle.more_body else None
            if self._timed is None:
                self._cancel()
            else:
                self._arm(self._body_s, self._body_late)
        elif self._timed is not None and not self._timed.more_body:
            self._timed = None
            self._cancel()
        if self._timed is None and (cycle is None or cycle.response_complete):
            # the start of the next request (or more of a body nobody reads)
            self._partial = cycle is None or not cycle.more_body
            if self._timer is None:
                self._arm(self._header_s, self._headers_late)

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel()
        super().connection_lost(exc)  # type: ignore[misc]

    # -- the deadlines -----------------------------------------------------------------------
    def _arm(self, seconds: float, callback: Any) -> None:
        self._cancel()
        self._timer = self.loop.call_later(seconds, callback)

    def _cancel(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _headers_late(self) -> None:
        self._timer = None
        cycle = self.cycle
        if self.transport.is_closing() or not (cycle is None or cycle.response_complete):
            return  # a request is being served: its headers were complete after all
        if self._partial:
            self.transport.write(_timeout_response("headers", self._header_s))
        self.transport.close()

    def _body_late(self) -> None:
        self._timer = None
        cycle, self._timed = self._timed, None
        if cycle is None or not cycle.more_body or self.transport.is_closing():
            return
        if not cycle.response_started:
            self.transport.write(_timeout_response("body", self._body_s))
            cycle.disconnected = True  # the application's receive() returns a disconnect
            cycle.message_event.set()
        self.transport.close()


class LooperHttpProtocol(ReadTimeouts, AutoHTTPProtocol):  # type: ignore[misc, valid-type]
    """uvicorn's HTTP/1.1 protocol (httptools when installed, else h11) with read
    timeouts from the environment or the defaults."""


def protocol_class(
    header_timeout_s: float | None = None, body_timeout_s: float | None = None
) -> type[asyncio.Protocol]:
    """The protocol class to pass to uvicorn as ``http=`` (None: from the environment,
    else the defaults)."""
    timeout_setting(header_timeout_s, HEADER_TIMEOUT_ENV, DEFAULT_HEADER_TIMEOUT_S)
    timeout_setting(body_timeout_s, BODY_TIMEOUT_ENV, DEFAULT_BODY_TIMEOUT_S)
    if header_timeout_s is None and body_timeout_s is None:
        return LooperHttpProtocol
    return type(
        "LooperHttpProtocol",
        (LooperHttpProtocol,),
        {"header_timeout_s": header_timeout_s, "body_timeout_s": body_timeout_s},
    )
