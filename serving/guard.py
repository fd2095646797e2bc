"""ASGI middleware in front of every endpoint: an optional bearer token and a body size cap.

Pure ASGI (no Starlette request objects), so a request costs two dict lookups when both pass.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_ENV = "WALSREC_API_TOKEN"
OPEN_PATHS = ("/healthz", "/livez", "/readyz")
DEFAULT_MAX_BODY_BYTES = 1 << 20


class RequestGuard:
    """Rejects unauthenticated (401) and oversized (413) requests before they reach an endpoint.

    Args:
        app: the wrapped ASGI app.
        token: the bearer token every request but the health checks must carry; None or empty
            turns authentication off.
        max_body_bytes: largest accepted request body, by Content-Length and by bytes received.
        open_paths: paths served without a token (health and readiness probes).
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        open_paths: Iterable[str] = OPEN_PATHS,
    ) -> None:
        self.app = app
        self.expected = f"Bearer {token}".encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        if self.expected is not None and scope["path"] not in self.open_paths:
            given = headers.get(b"authorization", b"")
            if not hmac.compare_digest(given, self.expected):
                await _reply(
                    send,
                    401,
                    "authorization: a valid 'Authorization: Bearer <token>' header is required",
                    [(b"www-authenticate", b"Bearer")],
                )
                return
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                await _reply(send, 400, "content-length: not a number")
                return
            if int(length) > self.max_body_bytes:
                await _reply(send, 413, self._too_large())
                return
            await self.app(scope, receive, send)
            return
        # No Content-Length (chunked): read the body up to the cap here, then hand it on. An
        # exception raised inside the app's receive() would come back as the app's own 500.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                await _reply(send, 413, self._too_large())
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _too_large(self) -> str:
        return f"body: request body exceeds {self.max_body_bytes} bytes"


async def _reply(send: Send, status: int, message: str, extra_headers: list | None = None) -> None:
    body = json.dumps({"error": message}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers + (extra_headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})
