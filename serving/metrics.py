"""Request metrics with bounded labels, and the /metrics endpoint that exposes them.

BentoML's own metrics middleware labels every request by its raw path, 401s and 404s included,
and sits outside every middleware a service adds: 25,000 requests to random paths grew each
worker by about 280 MiB and /metrics from 123 KB to 96 MB. The service therefore turns it off
(`metrics={"enabled": False}`) and counts requests here instead, in the same Prometheus
multiprocess registry (BentoML's `metrics_client`), under the same metric names
(`<namespace>_request_total`, `_request_duration_seconds`, `_request_in_progress`), with an
`endpoint` label that is one of the service's own paths or "other". A label set is therefore
one of (paths + 1) x (status codes the service sends), whatever clients ask for.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

__all__ = ["OTHER_PATH", "RequestMetrics", "metrics_app"]

OTHER_PATH = "other"

# One set of metric objects per process: Prometheus refuses to register a name twice, and an
# in-process test builds several apps.
_INSTRUMENTS: dict[str, Any] = {}


def _instruments(namespace: str) -> dict[str, Any]:
    if namespace not in _INSTRUMENTS:
        from bentoml._internal.configuration.containers import BentoMLContainer

        client = BentoMLContainer.metrics_client.get()
        labels = ["endpoint", "http_response_code"]
        _INSTRUMENTS[namespace] = {
            "total": client.Counter(
                namespace=namespace,
                name="request_total",
                documentation="HTTP requests by endpoint (a service path or 'other') and status",
                labelnames=labels,
            ),
            "duration": client.Histogram(
                namespace=namespace,
                name="request_duration_seconds",
                documentation="HTTP request duration in seconds",
                labelnames=labels,
                buckets=BentoMLContainer.duration_buckets.get(),
            ),
            "in_progress": client.Gauge(
                namespace=namespace,
                name="request_in_progress",
                documentation="HTTP requests in progress",
                labelnames=["endpoint"],
                multiprocess_mode="livesum",
            ),
        }
    return _INSTRUMENTS[namespace]


class RequestMetrics:
    """Counts, times and tracks requests; `endpoint` is bounded to `paths` plus "other".

    Args:
        paths: the service's own paths (every other path is counted as "other").
        namespace: the metric name prefix (BentoML's default for services).
    """

    def __init__(self, paths: Iterable[str], namespace: str = "bentoml_service") -> None:
        self.paths = frozenset(paths)
        self.namespace = namespace
        # The labelled children, made once per label set (Prometheus' labels() costs a lock and
        # a tuple per call): bounded like the label sets, (paths + 1) x status codes.
        self._in_progress: dict[str, Any] = {}
        self._finished: dict[tuple[str, int], tuple[Any, Any]] = {}

    def endpoint(self, path: str) -> str:
        return path if path in self.paths else OTHER_PATH

    def started(self, endpoint: str) -> float:
        gauge = self._in_progress.get(endpoint)
        if gauge is None:
            gauge = _instruments(self.namespace)["in_progress"].labels(endpoint=endpoint)
            self._in_progress[endpoint] = gauge
        gauge.inc()
        return time.perf_counter()

    def finished(self, endpoint: str, status: int, started: float) -> None:
        self._in_progress[endpoint].dec()
        children = self._finished.get((endpoint, status))
        if children is None:
            instruments = _instruments(self.namespace)
            labels = {"endpoint": endpoint, "http_response_code": str(status)}
            children = (
                instruments["total"].labels(**labels),
                instruments["duration"].labels(**labels),
            )
            self._finished[(endpoint, status)] = children
        total, duration = children
        total.inc()
        duration.observe(max(time.perf_counter() - started, 0.0))


async def metrics_app(scope: dict, receive: Any, send: Any) -> None:
    """ASGI app answering GET /metrics with every worker's metrics (Prometheus text format)."""
    import anyio.to_thread
    from bentoml._internal.configuration.containers import BentoMLContainer

    client = BentoMLContainer.metrics_client.get()
    extra = []
    if scope["method"] not in ("GET", "HEAD"):
        body, status, media_type = b'{"error": "method: use GET"}', 405, "application/json"
        extra = [(b"allow", b"GET, HEAD")]
    else:
        # Reading every worker's files is blocking I/O: off the event loop, as BentoML does.
        body = await anyio.to_thread.run_sync(client.generate_latest)
        status, media_type = 200, client.CONTENT_TYPE_LATEST
    headers = [
        (b"content-type", media_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body if scope["method"] != "HEAD" else b""})
