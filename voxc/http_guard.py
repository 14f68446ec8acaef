"""What stands between the network and the speech server's routes (voxc/server.py).

- `HeaderTimeoutH11`: uvicorn's h11 protocol with a deadline for a request's headers, on a new
  connection and between keep-alive requests (uvicorn has none: a slowloris client holding a socket
  open with half-sent headers is otherwise kept forever).
- `BodyGuard` (ASGI middleware): reads a request body up to a size limit while it arrives, chunked
  or not (413 past it), within a deadline (408 past it), then hands the app the whole body.
- `AdmissionGate` (ASGI middleware): a speech request's place (voxc/admission.py) is taken before
  its body is read -- 503 at once when there is none -- and given back when the whole exchange ends,
  however it ends (a try/finally around the request, its streamed response included).
- `BearerAuth` (ASGI middleware): `Authorization: Bearer <key>` on every route but /health and /ready.
"""
from __future__ import annotations

import asyncio
import hmac
import json

from uvicorn.protocols.http.h11_impl import H11Protocol

OPEN_PATHS = ("/health", "/ready")


async def send_error(send, status: int, message: str, kind: str, headers=()) -> None:
    body = json.dumps({"error": {"message": message, "type": kind, "param": None, "code": None}}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": body})


class HeaderTimeoutH11(H11Protocol):
    """Closes a connection whose next request's headers have not all arrived within `header_timeout`."""
    header_timeout = 10.0

    def _arm(self) -> None:
        cycle = self.cycle
        handle = getattr(self, "_header_timer", None)
        if handle is not None:
            handle.cancel()

        def expire():
            if self.cycle is cycle and not self.transport.is_closing():
                self.transport.close()
        self._header_timer = self.loop.call_later(self.header_timeout, expire)

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc) -> None:
        handle = getattr(self, "_header_timer", None)
        if handle is not None:
            handle.cancel()
        super().connection_lost(exc)


class BodyGuard:
    """Whole bodies of at most `max_bytes`, received within `timeout_s`, for POST requests."""

    def __init__(self, app, max_bytes: int, timeout_s: float, on_reject=None):
        self.app, self.max_bytes, self.timeout_s = app, max_bytes, timeout_s
        self.on_reject = on_reject or (lambda status: None)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            return await self.app(scope, receive, send)
        size = dict(scope["headers"]).get(b"content-length")
        if size is not None and (not size.isdigit() or int(size) > self.max_bytes):
            self.on_reject(413)
            return await send_error(send, 413, f"request body over {self.max_bytes} bytes", "invalid_request_error",
                                    [(b"connection", b"close")])
        body = bytearray()
        try:
            async with asyncio.timeout(self.timeout_s):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return
                    body += message.get("body", b"")
                    if len(body) > self.max_bytes:
                        self.on_reject(413)
                        return await send_error(send, 413, f"request body over {self.max_bytes} bytes",
                                                "invalid_request_error", [(b"connection", b"close")])
                    if not message.get("more_body", False):
                        break
        except TimeoutError:
            self.on_reject(408)
            return await send_error(send, 408, f"the request body did not arrive within {self.timeout_s:g} s",
                                    "invalid_request_error", [(b"connection", b"close")])
        delivered = False

        async def replay():
            nonlocal delivered
            if not delivered:
                delivered = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()
        return await self.app(scope, replay, send)


class AdmissionGate:
    def __init__(self, app, capacity, path: str, on_reject=None):
        self.app, self.capacity, self.path = app, capacity, path
        self.on_reject = on_reject or (lambda status: None)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != self.path or scope["method"] != "POST":
            return await self.app(scope, receive, send)
        ticket = self.capacity.admit()
        if ticket is None:
            self.on_reject(503)
            return await send_error(send, 503, "the server is at capacity; retry shortly", "overloaded",
                                    [(b"retry-after", b"1"), (b"connection", b"close")])
        try:
            return await self.app(scope, receive, send)
        finally:
            ticket.release()


class BearerAuth:
    def __init__(self, app, key: str):
        self.app, self.expected = app, f"Bearer {key}".encode()

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            return await self.app(scope, receive, send)
        given = dict(scope["headers"]).get(b"authorization", b"")
        if not hmac.compare_digest(given, self.expected):
            return await send_error(send, 401, "missing or wrong API key: send 'Authorization: Bearer <key>'",
                                    "invalid_request_error", [(b"www-authenticate", b"Bearer")])
        return await self.app(scope, receive, send)
