"""A small synthetic model in the (temporary) BentoML model store, the service in-process, and
the service as a real `bentoml serve` process answering HTTP on localhost."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import pytest
import scipy.sparse as sp

from serving.cli import serve_command, stop_server, wait_until_ready
from tests.conftest import PROJECT_ROOT
from tests.pipelines.conftest import train_config  # noqa: F401  (shared fixture)
from walsrec.models.recommender import RecommenderModel

N_USERS, N_ITEMS, N_FACTORS = 40, 60, 8

# Each in-process app would register BentoML's Prometheus metrics again in the one registry of
# this process (DuplicateTimeseries); the real-server test keeps them on.
os.environ["WALSREC_METRICS"] = "0"


def synthetic_model(seed: int = 0) -> RecommenderModel:
    """Random factors; user "u0" has seen items i0..i4; item i7 is the most popular."""
    rng = np.random.default_rng(seed)
    seen = sp.random(N_USERS, N_ITEMS, density=0.1, random_state=seed, format="lil")
    seen[0, :] = 0
    seen[0, :5] = 1.0
    seen = sp.csr_matrix(seen, dtype=np.float32)
    seen.data[:] = 1.0
    popularity = np.asarray((seen != 0).sum(axis=0)).ravel().astype(np.float64)
    popularity[7] = popularity.max() + 10
    return RecommenderModel(
        user_factors=rng.normal(0, 1, (N_USERS, N_FACTORS)).astype(np.float32),
        item_factors=rng.normal(0, 1, (N_ITEMS, N_FACTORS)).astype(np.float32),
        user_bias=None,
        item_bias=None,
        global_mean=0.0,
        user_ids=np.array([f"u{i}" for i in range(N_USERS)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(N_ITEMS)], dtype=object),
        seen=seen,
        item_popularity=popularity,
        item_titles={"i1": "Item One"},
        config={"n_factors": N_FACTORS, "regularization": 0.5, "alpha": 2.0},
        metadata={"trained_at": "2024-01-01T00:00:00+00:00"},
    )


@pytest.fixture(scope="session")
def model() -> RecommenderModel:
    return synthetic_model()


@pytest.fixture(scope="session")
def packaged_model(model: RecommenderModel) -> str:
    """The synthetic model as the newest `walsrec` in the BentoML model store."""
    from serving.packaging import save_to_model_store

    return save_to_model_store(
        model,
        model_name="walsrec",
        model_version="7",
        metrics={"wals": {"ndcg@10": 0.25}, "popularity": {"ndcg@10": 0.1}},
    )


@pytest.fixture(scope="session")
def service(packaged_model: str):
    """The service class, serving exactly the synthetic model (whatever else is in the store)."""
    os.environ["WALSREC_MODEL_TAG"] = packaged_model
    import serving.service

    assert packaged_model == serving.service.MODEL_TAG, "serving.service was imported too early"
    yield serving.service.WalsrecService
    os.environ.pop("WALSREC_MODEL_TAG", None)  # later subprocesses pick their own model


def guard_options(service) -> dict:
    """The RequestGuard's options the service's app factory uses (tests change them per app)."""
    import serving.service

    return serving.service.GUARD_OPTIONS


@pytest.fixture
def client(service):
    from starlette.testclient import TestClient

    with TestClient(service.to_asgi()) as test_client:
        yield test_client


API_TOKEN = "live-server-token"
API_ENDPOINTS = frozenset(
    [
        "/recommend",
        "/recommend_batch",
        "/recommend_for_items",
        "/similar_items",
        "/similar_users",
        "/rank",
        "/explain",
        "/score",
        "/model_info",
    ]
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    """A `bentoml serve serving.service:WalsrecService` process on 127.0.0.1."""

    port: int
    process: subprocess.Popen
    log_path: Path
    token: str | None = API_TOKEN

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        token: bool = True,
        connection: http.client.HTTPConnection | None = None,
    ) -> tuple[int, bytes]:
        """(status, body) of one request; the bearer token is sent unless `token` is False."""
        sent = dict(headers or {})
        if token and self.token:
            sent.setdefault("Authorization", f"Bearer {self.token}")
        client = connection or http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)
        try:
            client.request(method, path, body=body, headers=sent)
            response = client.getresponse()
            return response.status, response.read()
        finally:
            if connection is None:
                client.close()

    def post(self, path: str, body: Any, **options: Any) -> tuple[int, Any]:
        """POST `body` as JSON; (status, decoded JSON answer)."""
        headers = {"Content-Type": "application/json", **options.pop("headers", {})}
        status, answer = self.request("POST", path, json.dumps(body).encode(), headers, **options)
        return status, json.loads(answer or b"null")

    def log(self, start: int = 0) -> str:
        """The server's output (stdout and stderr) from byte `start` on."""
        with self.log_path.open("rb") as handle:
            handle.seek(start)
            return handle.read().decode("utf-8", errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size

    def worker_rss(self) -> int:
        """Resident memory of the worker processes, in bytes."""
        workers = [
            child
            for child in psutil.Process(self.process.pid).children(recursive=True)
            if "_bentoml_impl.worker.service" in " ".join(child.cmdline())
        ]
        assert workers, "no BentoML worker process found"
        return sum(worker.memory_info().rss for worker in workers)


def start_server(
    model_tag: str, log_path: Path, *, ready: bool = True, **environment: str
) -> LiveServer:
    """Start the service on a free port serving `model_tag` (one worker, metrics on)."""
    port = free_port()
    env = {
        **os.environ,
        "WALSREC_MODEL_TAG": model_tag,
        "WALSREC_WORKERS": "1",
        "WALSREC_METRICS": "1",
        "WALSREC_API_TOKEN": API_TOKEN,
        **environment,
    }
    log = log_path.open("wb")
    process = subprocess.Popen(
        serve_command("127.0.0.1", port), cwd=PROJECT_ROOT, env=env, start_new_session=True,
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    log.close()
    server = LiveServer(port, process, log_path, env["WALSREC_API_TOKEN"] or None)
    if ready:
        try:
            wait_until_ready(f"{server.url}/readyz", process, timeout=120)
        except Exception:
            stop_server(process)
            raise
    return server


@pytest.fixture(scope="session")
def live_server(packaged_model: str, tmp_path_factory) -> LiveServer:
    """The synthetic model served over HTTP, with a token and a 2 s header deadline."""
    server = start_server(
        packaged_model,
        tmp_path_factory.mktemp("live-server") / "server.log",
        WALSREC_HEADER_TIMEOUT="2",
    )
    yield server
    stop_server(server.process, timeout=30)
