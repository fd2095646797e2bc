"""Server-level bounds below the ASGI app: bounded request headers, and no per-request timers.

Headers: BentoML's configuration has no key for uvicorn's limits, but its worker builds
`uvicorn.Config` (with `http="auto"`) after importing the service module, and uvicorn resolves
"auto" through its `HTTP_PROTOCOLS` table when the server starts: `install()` points that entry
at `serving.http_protocol.BoundedHttpToolsProtocol` (a 16 KiB header cap and a 10 s header
deadline). Without httptools uvicorn parses with h11, whose own 16 KiB cap applies (but no
deadline); `install()` then says so in the log. A reverse proxy in front still needs its own
limits (README, Serving).

Request timers: BentoML's `TimeoutMiddleware` (the `traffic.timeout`, outside every middleware
a service adds) arms a `loop.call_later(timeout, ...)` per request and never cancels it, so every
request, a rejected one included, keeps a timer, a future and a closure alive for the whole
timeout (30 s here): about 650 bytes each, 50 MiB per worker after 100,000 quick requests.
`install()` swaps in a subclass that cancels the timer once the request is answered (the
factory imports the class when it builds the app, after the service module is imported).
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
from collections.abc import Mapping

from bentoml._internal.server.http import traffic

__all__ = ["CancellingTimeoutMiddleware", "install"]

logger = logging.getLogger(__name__)


class CancellingTimeoutMiddleware(traffic.TimeoutMiddleware):
    """BentoML's TimeoutMiddleware (504 when no response starts within `timeout` seconds),
    with its timer cancelled as soon as the request no longer needs it."""

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        timer = loop.call_later(self.timeout, self._set_timer_out, waiter)

        async def started_send(message) -> None:
            if not waiter.done():
                waiter.set_result(None)
            await send(message)

        task = asyncio.ensure_future(self.app(scope, receive, started_send))
        # The app may finish without sending anything (a client that went away).
        task.add_done_callback(lambda _: waiter.done() or waiter.set_result(None))
        try:
            await waiter
        except TimeoutError:
            if task.cancel():
                message = f"Not able to process the request in {self.timeout} seconds"
                await traffic.JSONResponse({"error": message}, status_code=504)(
                    scope, receive, send
                )
            return
        finally:
            timer.cancel()
        await task


def install(environ: Mapping[str, str] | None = None) -> None:
    """Bound request headers (uvicorn's "auto" and "httptools" protocols become the bounded
    one) and cancel BentoML's request timers."""
    from uvicorn import config

    traffic.TimeoutMiddleware = CancellingTimeoutMiddleware
    if importlib.util.find_spec("httptools") is None:
        logger.warning(
            "httptools is not installed: uvicorn parses requests with h11 (headers capped at "
            "16 KiB, but no header deadline)"
        )
        return
    from serving import http_protocol

    http_protocol.configure(os.environ if environ is None else environ)
    target = "serving.http_protocol:BoundedHttpToolsProtocol"
    config.HTTP_PROTOCOLS["auto"] = target
    config.HTTP_PROTOCOLS["httptools"] = target
