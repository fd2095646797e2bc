"""`run.py serve`'s port check: a live server holds the port, a stopped one's connections don't."""

from __future__ import annotations

import socket

import pytest

from serving.cli import _check_port_free
from walsrec.errors import WalsrecError


def test_port_is_free_right_after_a_server_stopped_but_not_while_it_listens() -> None:
    server = socket.socket()
    server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port))
    accepted, _ = server.accept()
    with pytest.raises(WalsrecError, match=f"cannot listen on 127.0.0.1:{port}"):
        _check_port_free("127.0.0.1", port)
    # The server closes first, as a stopped server does: its side of the connection stays in
    # TIME_WAIT for a minute, which once made `run.py serve` refuse to restart.
    accepted.close()
    server.close()
    client.close()
    _check_port_free("127.0.0.1", port)
