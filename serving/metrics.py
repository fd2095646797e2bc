"""Request metrics with bounded labels, and the /metrics endpoint that exposes them.

BentoML's own metrics middleware labels every request by its raw path, 401s and 404s included,
and sits outside every middleware a service adds: 25,000 requests to random paths grew each
worker by about 280 MiB and /metrics from 123 KB to 96 MB. The service therefore turns it off
(`metrics={"enabled": False}`) and counts requests here instead, in the same Prometheus
multiprocess registry (BentoML's `metrics_client`), under the same metric names
(`<namespace>_request_total`, `_request_duration_seconds`, `_request_in_progress`), with an
`endpoint` label that is one of the service's own paths or "other". A label set is therefore
one of (paths + 1) x (status codes the service sends), whatever clients ask for.

A request is counted in plain Python (a few dict and list operations); the counts reach the
Prometheus files (BentoML's multiprocess registry: a lock, a `getpid()` and an mmap write per
value, five values per request) at most FLUSH_SECONDS after the request, and before every
scrape this worker answers. Writing them per request cost about 8% of a `/recommend`'s CPU
(bench/serve/README.md). Another worker's last second may therefore be missing from a scrape,
which Prometheus' rates over minutes don't notice.
"""

from __future__ import annotations

import asyncio
import bisect
import time
import weakref
from collections.abc import Iterable
from typing import Any

__all__ = ["OTHER_PATH", "RequestMetrics", "metrics_app"]

OTHER_PATH = "other"
FLUSH_SECONDS = 1.0

# One set of metric objects per process: Prometheus refuses to register a name twice, and an
# in-process test builds several apps.
_INSTRUMENTS: dict[str, Any] = {}
# This process's RequestMetrics, flushed before a scrape.
_RECORDERS: weakref.WeakSet = weakref.WeakSet()


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
        # Requests in progress per endpoint, and per (endpoint, status): [count, seconds summed,
        # counts per histogram bucket], since the last flush. Bounded like the label sets.
        self._in_progress: dict[str, int] = {}
        self._written_in_progress: dict[str, int] = {}
        self._pending: dict[tuple[str, int], list] = {}
        self._bounds: list[float] | None = None
        self._flush_armed = False
        _RECORDERS.add(self)

    def endpoint(self, path: str) -> str:
        return path if path in self.paths else OTHER_PATH

    def started(self, endpoint: str) -> float:
        self._in_progress[endpoint] = self._in_progress.get(endpoint, 0) + 1
        return time.perf_counter()

    def finished(self, endpoint: str, status: int, started: float) -> None:
        seconds = max(time.perf_counter() - started, 0.0)
        self._in_progress[endpoint] -= 1
        pending = self._pending.get((endpoint, status))
        if pending is None:
            if self._bounds is None:
                self._bounds = list(_instruments(self.namespace)["duration"]._upper_bounds)
            pending = self._pending[endpoint, status] = [0, 0.0, [0] * len(self._bounds)]
        pending[0] += 1
        pending[1] += seconds
        # Prometheus counts an observation in the first bucket whose bound is >= it.
        pending[2][bisect.bisect_left(self._bounds, seconds)] += 1
        if not self._flush_armed:
            self._arm_flush()

    def _arm_flush(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no event loop (a direct call): write now
            self.flush()
            return
        self._flush_armed = True
        loop.call_later(FLUSH_SECONDS, self.flush)

    def flush(self) -> None:
        """Write the counts gathered since the last flush to the Prometheus values."""
        self._flush_armed = False
        instruments = _instruments(self.namespace)
        for endpoint, count in self._in_progress.items():
            if self._written_in_progress.get(endpoint) != count:
                instruments["in_progress"].labels(endpoint=endpoint).set(count)
                self._written_in_progress[endpoint] = count
        pending, self._pending = self._pending, {}
        for (endpoint, status), (count, seconds, buckets) in pending.items():
            labels = {"endpoint": endpoint, "http_response_code": str(status)}
            instruments["total"].labels(**labels).inc(count)
            histogram = instruments["duration"].labels(**labels)
            # Histogram.observe() per request, in one write per bucket: its sum and buckets.
            histogram._sum.inc(seconds)
            for bucket, hits in zip(histogram._buckets, buckets, strict=True):
                if hits:
                    bucket.inc(hits)


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
        for metrics in list(_RECORDERS):
            metrics.flush()  # this worker's latest counts
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
