"""Connections spread over the workers (serving/balance.py): the shared board, and a real
two-worker `bentoml serve` given a burst of keep-alive connections."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import psutil

from serving.balance import Board
from serving.cli import stop_server
from tests.serving.conftest import API_TOKEN, start_server


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_workers_claim_their_own_slots_and_see_each_others_load(tmp_path: Path) -> None:
    path = tmp_path / "board"
    first, second = Board(path), Board(path, pid=psutil.Process().ppid())
    assert first.slot is not None and second.slot is not None and first.slot != second.slot
    assert first.fewest_elsewhere() == 0
    second.publish(5)
    first.publish(2)
    assert first.fewest_elsewhere() == 5 and second.fewest_elsewhere() == 2
    second.release()
    assert first.fewest_elsewhere() is None  # no other worker left
    first.release()
    assert not path.exists()  # the last worker out leaves nothing behind


def test_a_dead_workers_slot_is_ignored_and_reused(tmp_path: Path) -> None:
    path = tmp_path / "board"
    dead = Board(path, pid=_dead_pid())
    dead.publish(0)  # a crashed worker that held nothing would otherwise win every accept
    alive = Board(path)
    assert alive.slot == dead.slot  # its slot is taken over
    other = Board(path, pid=psutil.Process().ppid())
    assert alive.fewest_elsewhere() == 0 and other.slot != alive.slot


def _connections_per_worker(server) -> list[int]:
    workers = [
        child
        for child in psutil.Process(server.process.pid).children(recursive=True)
        if "_bentoml_impl.worker.service" in " ".join(child.cmdline())
    ]
    counts = []
    for worker in workers:
        established = [
            c
            for c in worker.net_connections(kind="tcp")
            if c.status == psutil.CONN_ESTABLISHED and c.laddr and c.laddr.port == server.port
        ]
        counts.append(len(established))
    return sorted(counts)


def test_a_burst_of_keep_alive_connections_is_spread_over_the_workers(
    packaged_model: str, tmp_path: Path
) -> None:
    # Without balancing the worker that woke first took most of such a burst (16/0, 15/1 and
    # 13/3 were common); with it each worker gets about half.
    # Its own BentoML home: `bentoml serve` empties its home's Prometheus folder at start, which
    # would erase the session's live server's metrics.
    home = tmp_path / "home"
    shutil.copytree(Path(os.environ["BENTOML_HOME"], "models"), home / "models")
    scratch = tmp_path / "tmp"  # the server's TMPDIR, where the workers' board lives
    scratch.mkdir()
    server = start_server(
        packaged_model,
        tmp_path / "server.log",
        WALSREC_WORKERS="2",
        BENTOML_HOME=str(home),
        TMPDIR=str(scratch),
    )
    connections = []
    try:
        deadline = time.monotonic() + 60  # /readyz answers once the first worker is up
        while server.log().count("Service walsrec initialized") < 2:
            assert time.monotonic() < deadline, server.log()[-2000:]
            time.sleep(0.1)
        time.sleep(0.5)  # each then claims its slot on the board
        connections = [
            http.client.HTTPConnection("127.0.0.1", server.port, timeout=30) for _ in range(16)
        ]
        for connection in connections:
            connection.connect()
        body = json.dumps({"user_id": "u1", "k": 3})
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {API_TOKEN}"}
        for connection in connections:
            connection.request("POST", "/recommend", body=body, headers=headers)
            response = connection.getresponse()
            assert response.status == 200, response.read()
            response.read()
        split = _connections_per_worker(server)
        assert len(split) == 2 and sum(split) == 16, split
        assert split[0] >= 6, split
        assert len(list(scratch.glob("walsrec-accept-*"))) == 1
    finally:
        for connection in connections:
            connection.close()
        stop_server(server.process, timeout=30)
    assert not list(scratch.glob("walsrec-accept-*"))  # the last worker out removed it
