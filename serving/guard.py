"""ASGI middleware in front of every endpoint: metrics, bearer token, JSON only, body size cap.

Pure ASGI (no Starlette request objects), so a request that passes costs a few dict lookups.
Everything it rejects (401, 413, 415, 400 for a bad Content-Length) is answered here, before
BentoML routes, parses or logs anything, and is counted with a bounded `endpoint` label
(serving/metrics.py); it is not logged. The service's own endpoints that BentoML would otherwise
answer (/metrics, /docs.json) are served from `own_routes`.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from serving.metrics import RequestMetrics

Scope = dict[str, Any]
Message = dict[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

TOKEN_ENV = "WALSREC_API_TOKEN"
OPEN_PATHS = ("/healthz", "/livez", "/readyz")
DEFAULT_MAX_BODY_BYTES = 1 << 20
JSON_MEDIA_TYPE = b"application/json"


def read_token(environ: Mapping[str, str]) -> str | None:
    """The API token from the environment: None when unset.

    Raises:
        ValueError: the variable is set but empty or blank (that once turned auth off silently).
    """
    token = environ.get(TOKEN_ENV)
    if token is None:
        return None
    if not token.strip():
        raise ValueError(
            f"{TOKEN_ENV} is set but empty: set it to the token clients must send, or unset it "
            "to serve without authentication"
        )
    if token != token.strip() or any(character.isspace() for character in token):
        raise ValueError(f"{TOKEN_ENV} contains whitespace, which a bearer token cannot carry")
    return token


class RequestGuard:
    """Rejects unauthenticated (401), non-JSON (415) and oversized (413) requests before they
    reach an endpoint, and counts every request with bounded labels.

    Args:
        app: the wrapped ASGI app.
        token: the bearer token every request but the health checks must carry; None turns
            authentication off. The scheme is matched case-insensitively ("bearer" works).
        max_body_bytes: largest accepted request body, by Content-Length and by bytes received.
        open_paths: paths served without a token (health and readiness probes).
        metrics: request metrics, or None for none.
        own_routes: path -> ASGI app answered here, after the token check (/metrics, /docs.json).
        json_paths: paths whose POST bodies must be JSON (415 otherwise); None: every path.
        fast_path: answers the APIs' POSTs without BentoML's routing (serving/fast_path.py);
            None: everything goes to `app`.
    """

    def __init__(
        self,
        app: ASGIApp,
        token: str | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        open_paths: Iterable[str] = OPEN_PATHS,
        metrics: RequestMetrics | None = None,
        own_routes: Mapping[str, ASGIApp] | None = None,
        json_paths: Iterable[str] | None = None,
        fast_path: Any = None,
    ) -> None:
        self.app = app
        self.token = token.encode() if token else None
        self.max_body_bytes = max_body_bytes
        self.open_paths = frozenset(open_paths)
        self.metrics = metrics
        self.own_routes = dict(own_routes or {})
        self.json_paths = None if json_paths is None else frozenset(json_paths)
        self.fast_path = fast_path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if self.metrics is None:
            await self._guarded(scope, receive, send)
            return
        endpoint = self.metrics.endpoint(scope["path"])
        started = self.metrics.started(endpoint)
        status = 500  # if the app fails, or ends without an answer
        try:
            status = await self._guarded(scope, receive, send) or 500
        finally:
            self.metrics.finished(endpoint, status, started)

    async def _guarded(self, scope: Scope, receive: Receive, send: Send) -> int:
        """Answers or hands on the request; returns the answer's status (0: none was sent)."""
        headers = dict(scope["headers"])
        path = scope["path"]
        if self.token is not None and path not in self.open_paths and not self._authorized(headers):
            return await reply(
                send,
                401,
                "authorization: a valid 'Authorization: Bearer <token>' header is required",
                "authorization",
                [(b"www-authenticate", b"Bearer")],
            )
        own = self.own_routes.get(path)
        if own is not None:
            return await self._handed_on(own, scope, receive, send)
        if scope["method"] == "POST" and (self.json_paths is None or path in self.json_paths):
            media_type = headers.get(b"content-type", b"").split(b";", 1)[0].strip().lower()
            if media_type != JSON_MEDIA_TYPE:
                return await reply(
                    send, 415, "content-type: only application/json is accepted", "content-type"
                )
        fast = (
            scope["method"] == "POST"
            and self.fast_path is not None
            and self.fast_path.handles(path)
        )
        length = headers.get(b"content-length")
        if length is not None:
            if not length.isdigit():
                return await reply(send, 400, "content-length: not a number", "content-length")
            if int(length) > self.max_body_bytes:
                return await reply(send, 413, self._too_large(), "body")
            if not fast:
                return await self._handed_on(self.app, scope, receive, send)
        # The body, read here up to the cap (no Content-Length: chunked), then answered by the
        # fast path or handed on. An exception raised inside the app's receive() would come
        # back as the app's own 500, so the cap is enforced before the app sees a byte.
        chunks: list[bytes] = []
        received = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return 0  # the client went away
            chunk = message.get("body", b"")
            received += len(chunk)
            if received > self.max_body_bytes:
                return await reply(send, 413, self._too_large(), "body")
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if fast:
            return await self.fast_path.answer(scope, body, send)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self._handed_on(self.app, scope, replay, send)

    async def _handed_on(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> int:
        """`app`'s answer, and its status (read from what it sends only when metrics count)."""
        if self.metrics is None:
            await app(scope, receive, send)
            return 0
        status = 0

        async def status_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        await app(scope, receive, status_send)
        return status

    def _authorized(self, headers: dict[bytes, bytes]) -> bool:
        # RFC 7235: the scheme is case-insensitive, one or more spaces before the credentials.
        scheme, _, credentials = headers.get(b"authorization", b"").partition(b" ")
        return scheme.lower() == b"bearer" and hmac.compare_digest(
            credentials.strip(b" "), self.token
        )

    def _too_large(self) -> str:
        return f"body: request body exceeds {self.max_body_bytes} bytes"


async def reply(
    send: Send, status: int, message: str, field: str, extra_headers: list | None = None
) -> int:
    """A JSON error answer `{"error", "field"}` (the service's ErrorResponse); returns
    `status`."""
    body = json.dumps({"error": message, "field": field}).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": headers + (extra_headers or []),
        }
    )
    await send({"type": "http.response.body", "body": body})
    return status
