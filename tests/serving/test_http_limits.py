"""`http_limits.install()`: what it changes in uvicorn and BentoML (the limits themselves are
tested over HTTP in test_hardening.py)."""

from __future__ import annotations

import asyncio
import importlib.util
import logging

from bentoml._internal.server.http import traffic
from uvicorn import config

from serving import http_limits


def test_install_points_uvicorn_at_the_bounded_protocol(monkeypatch) -> None:
    for name in ("auto", "httptools"):
        monkeypatch.setitem(config.HTTP_PROTOCOLS, name, config.HTTP_PROTOCOLS[name])
    monkeypatch.setattr(traffic, "TimeoutMiddleware", traffic.TimeoutMiddleware)
    http_limits.install({"WALSREC_MAX_HEADER_BYTES": "1000", "WALSREC_HEADER_TIMEOUT": "3"})
    assert config.HTTP_PROTOCOLS["auto"] == "serving.http_protocol:BoundedHttpToolsProtocol"
    assert traffic.TimeoutMiddleware is http_limits.CancellingTimeoutMiddleware
    from serving.http_protocol import BoundedHttpToolsProtocol

    assert BoundedHttpToolsProtocol.max_header_bytes == 1000
    assert BoundedHttpToolsProtocol.header_timeout == 3.0
    http_limits.install({})  # back to the defaults for the rest of the session
    assert BoundedHttpToolsProtocol.max_header_bytes == 16 * 1024


def test_without_httptools_uvicorn_keeps_h11_and_the_log_says_so(monkeypatch, caplog) -> None:
    default = config.HTTP_PROTOCOLS["auto"]
    monkeypatch.setitem(config.HTTP_PROTOCOLS, "auto", default)
    monkeypatch.setattr(traffic, "TimeoutMiddleware", traffic.TimeoutMiddleware)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "httptools" else find_spec(name)
    )
    with caplog.at_level(logging.WARNING, logger="serving.http_limits"):
        http_limits.install({})
    assert config.HTTP_PROTOCOLS["auto"] == default
    assert traffic.TimeoutMiddleware is http_limits.CancellingTimeoutMiddleware
    assert "httptools is not installed" in caplog.text


class _RecordingTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.writes: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name, default=None):
        return {"sockname": ("127.0.0.1", 3000), "peername": ("127.0.0.1", 5555)}.get(name, default)

    def write(self, data) -> None:
        self.writes.append(bytes(data))

    def writelines(self, pieces) -> None:
        self.writes.append(b"".join(pieces))  # one call: one send

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...


async def _answer_app(scope, receive, send) -> None:
    await receive()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", b"7")]})  # fmt: skip
    await send({"type": "http.response.body", "body": b'{"a":1}'})


def _writes_per_answer(join: bool) -> list[bytes]:
    from uvicorn.server import ServerState

    from serving import http_protocol

    async def run() -> list[bytes]:
        previous = http_protocol.JOIN_WRITES
        http_protocol.JOIN_WRITES = join
        try:
            settings = config.Config(app=_answer_app, log_config=None, access_log=False)
            settings.load()
            protocol = http_protocol.BoundedHttpToolsProtocol(
                config=settings, server_state=ServerState(), app_state={},
                _loop=asyncio.get_running_loop(),
            )  # fmt: skip
            transport = _RecordingTransport()
            protocol.connection_made(transport)
            protocol.data_received(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            for _ in range(100):
                await asyncio.sleep(0)
            protocol.connection_lost(None)
            return transport.writes
        finally:
            http_protocol.JOIN_WRITES = previous

    return asyncio.run(run())


def test_an_answer_goes_out_in_one_write() -> None:
    # uvicorn writes the status line and headers, then the body: two send()s, two TCP segments,
    # and a client that wakes twice per answer.
    (joined,) = _writes_per_answer(join=True)
    assert joined.startswith(b"HTTP/1.1 200 OK\r\n") and joined.endswith(b'\r\n\r\n{"a":1}')
    separate = _writes_per_answer(join=False)
    assert len(separate) == 2 and b"".join(separate) == joined
