"""`http_limits.install()`: what it changes in uvicorn and BentoML (the limits themselves are
tested over HTTP in test_hardening.py)."""

from __future__ import annotations

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
