"""The hot endpoints answered straight from the guard, without BentoML's per-request machinery.

BentoML's route for an API builds a Starlette request, a context, response headers and
background tasks per request, and its wrapper re-raises through several layers: on a quiet
machine that made the service 0.65x a bare Starlette app's req/s at one client (issue #12).
`FastPath` keeps what matters and drops the rest: for a POST to one of the service's APIs that
the guard (serving/guard.py) has already let through (token, JSON only, body cap), it validates
the body with the API's own pydantic input model (the one BentoML uses and the OpenAPI document
shows), calls the API's own function on the worker's service instance and writes the answer's
JSON. Where the function runs depends on its cost: a request the service's `inline` rule calls
small (one user's matrix-vector product over a catalogue of bounded size: well under a
millisecond) runs on the event loop, as a bare ASGI app would run it, since handing it to a
thread cost more than computing it (bench/serve); everything else runs in a bounded thread
pool (the service's `threads`, like BentoML's, plus one slot that requests over HEAVY_ITEMS
items share, so they never take every thread). The answers are
BentoML's, byte for byte in body and status: a validation error is
`400 {"error": "N validation error(s) for ...", "detail": [...]}` without the input, a body that
is not JSON is the same 400 (`json_invalid`), a model-dependent rule is the API's own
`{"error", "field"}`. A rejected request is one INFO line without client data; an unexpected
exception is a 500 with BentoML's generic message and one logged traceback.

Everything else (health, readiness, metrics, OpenAPI, lifecycle, packaging) stays BentoML's.
`WALSREC_FAST_PATH=0` routes the APIs through BentoML again (the tests run both ways).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio
from pydantic import BaseModel, ValidationError

from serving.rejections import BENTOML_API_LOGGER  # noqa: E402

# BentoML's API logger: its handlers are the ones `bentoml serve` sets up, and the lines keep the
# format of the rejections BentoML's own routing logs (serving/rejections.py).
logger = logging.getLogger(BENTOML_API_LOGGER)

JSON_HEADERS = [(b"content-type", b"application/json")]
# A request is heavy when it asks for or lists more than this many items (users x k for a
# batch): it then waits for the one heavy slot of the worker, so however many heavy requests
# arrive, the light ones (a one-user /recommend) keep their own threads instead of queueing
# behind them (bench/serve/worst_case.py).
HEAVY_ITEMS = 1_000
UNEXPECTED = b'{"error":"An unexpected error has occurred, please check the server log."}'


class FastPath:
    """Answers POSTs to the service's APIs from the service instance of this worker.

    Args:
        service: the BentoML service class (its `apis` give each route's function and input
            model).
        instance: returns this worker's service instance, or None before BentoML made it (then
            requests go the normal way).
        threads: endpoint threads per worker (BentoML's `threads` for the service).
        inline: `inline(path, arguments)` is true for a request cheap enough to compute on the
            event loop; None: every request goes to the threads.
    """

    def __init__(
        self,
        service: Any,
        instance: Callable[[], Any],
        threads: int,
        inline: Callable[[str, Mapping[str, Any]], bool] | None = None,
    ) -> None:
        self.routes: Mapping[str, tuple[Callable[..., Any], type[BaseModel]]] = {
            api.route: (api.func, api.input_spec) for api in service.apis.values()
        }
        self.instance = instance
        self.threads = threads
        self.inline = inline
        # Made in the worker's event loop: `threads` slots for light requests, one for heavy.
        self.light: anyio.CapacityLimiter | None = None
        self.heavy: anyio.CapacityLimiter | None = None

    def handles(self, path: str) -> bool:
        return path in self.routes and self.instance() is not None

    async def answer(self, scope: dict, body: bytes, send: Callable) -> int:
        """Answers the request; returns the answer's status."""
        func, input_model = self.routes[scope["path"]]
        try:
            request = input_model.model_validate_json(body or b"{}")
        except ValidationError as exc:
            count = exc.error_count()
            logger.info(
                "rejected POST %s: 400 (%d validation error%s)",
                scope["path"], count, "" if count == 1 else "s",
            )  # fmt: skip
            error = {
                "error": f"{count} validation error for {exc.title}",
                "detail": exc.errors(include_context=False, include_input=False),
            }
            await _send_json(send, 400, _dumps(error))
            return 400
        arguments = {name: getattr(request, name) for name in type(request).model_fields}
        instance = self.instance()
        try:
            if self.inline is not None and self.inline(scope["path"], arguments):
                output = func(instance, **arguments)
            else:
                if self.light is None:
                    self.light = anyio.CapacityLimiter(self.threads)
                    self.heavy = anyio.CapacityLimiter(1)
                limiter = self.heavy if request_items(arguments) > HEAVY_ITEMS else self.light
                output = await anyio.to_thread.run_sync(
                    lambda: func(instance, **arguments), limiter=limiter
                )
        except Exception:
            logger.exception("POST %s failed", scope["path"])
            await _send_json(send, 500, UNEXPECTED)
            return 500
        if isinstance(output, BaseModel):
            await _send_json(send, 200, output.model_dump_json().encode())
            return 200
        # A Starlette response (the API's answers, already rendered).
        await output(scope, _no_body, send)
        return output.status_code


def request_items(arguments: Mapping[str, Any]) -> int:
    """Items a request asks for or lists: users x k, or its longest id list."""
    users = arguments.get("user_ids")
    k = arguments.get("k")
    asked = (len(users) if isinstance(users, list) else 1) * (k if isinstance(k, int) else 0)
    listed = max((len(value) for value in arguments.values() if isinstance(value, list)), default=0)
    return max(asked, listed)


async def _no_body() -> dict:
    return {"type": "http.disconnect"}


def _dumps(value: Any) -> bytes:
    """As Starlette's JSONResponse renders it (BentoML's error answers)."""
    return json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


async def _send_json(send: Callable, status: int, body: bytes) -> None:
    headers = [*JSON_HEADERS, (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
