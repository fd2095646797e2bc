"""What an anonymous or careless client can do to the real server: nothing that lasts, no 5xx.

Every test talks HTTP to a `bentoml serve` process (the `live_server` fixture: the synthetic
model, a bearer token, one worker, metrics on, a 2 s header deadline).
"""

from __future__ import annotations

import http.client
import json
import random
import re
import socket
import string
import time
import uuid
from pathlib import Path

import bentoml
import numpy as np
import pytest

import walsrec
from serving.cli import serve, stop_server, wait_until_ready
from serving.packaging import save_to_model_store
from serving.schemas import MAX_ANSWER_ITEMS, MAX_BATCH_K, MAX_BATCH_USERS, MAX_RATING
from tests.serving.conftest import (
    API_ENDPOINTS,
    N_ITEMS,
    LiveServer,
    start_server,
    synthetic_model,
)
from walsrec.errors import WalsrecError
from walsrec.models.recommender import file_sha256

SERVICE_PATHS = API_ENDPOINTS | {"/healthz", "/livez", "/readyz", "/metrics", "/docs.json", "/"}


def _metrics(server: LiveServer) -> bytes:
    status, body = server.request("GET", "/metrics")
    assert status == 200
    return body


def _random_path() -> str:
    return "/" + "".join(random.choices(string.ascii_letters + string.digits, k=16))


def _flood(server: LiveServer, count: int) -> None:
    """`count` requests to random paths over one keep-alive connection: a quarter with the
    token (404), the rest without (401), GETs and JSON POSTs."""
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        for index in range(count):
            method = "POST" if index % 2 else "GET"
            status, _ = server.request(
                method,
                _random_path(),
                body=b"{}" if method == "POST" else None,
                headers={"Content-Type": "application/json"},
                token=index % 4 == 0,
                connection=connection,
            )
            assert status in (401, 404, 405), status
    finally:
        connection.close()


def test_requests_to_random_paths_leave_no_lasting_cost(live_server: LiveServer) -> None:
    random.seed(12)
    _flood(live_server, 1_000)  # first requests allocate what any traffic does
    _metrics(live_server)  # and /metrics counts itself once it has answered
    metrics_before, rss_before = len(_metrics(live_server)), live_server.worker_rss()
    _flood(live_server, 25_000)
    metrics_after, rss_after = _metrics(live_server), live_server.worker_rss()
    assert len(metrics_after) <= 1.1 * metrics_before, (metrics_before, len(metrics_after))
    assert rss_after <= 1.1 * rss_before, (rss_before >> 20, rss_after >> 20)
    endpoints = set(re.findall(rb'endpoint="([^"]*)"', metrics_after))
    assert endpoints and {e.decode() for e in endpoints} <= SERVICE_PATHS | {"other"}
    assert re.search(rb'_total\{endpoint="other",http_response_code="401"\} [1-9]', metrics_after)


def _sample(metrics: bytes, name: str, labels: str) -> float:
    line = re.escape(f"{name}{{{labels}}}".encode())
    found = re.search(rb"^" + line + rb" (\S+)$", metrics, re.M)
    return float(found.group(1)) if found else 0.0


def test_metrics_count_every_answered_request_by_the_next_scrape(live_server: LiveServer) -> None:
    # Counts gather in the worker and reach Prometheus' files once a second and before each
    # scrape: a scrape right after the requests must already show every one of them.
    labels = 'endpoint="/recommend",http_response_code="200"'
    bad = 'endpoint="/recommend",http_response_code="400"'
    prefix = "bentoml_service_request"
    before = _metrics(live_server)
    for _ in range(7):
        assert live_server.post("/recommend", {"user_id": "u1", "k": 2})[0] == 200
    assert live_server.post("/recommend", {"user_id": "u1", "k": 0})[0] == 400
    after = _metrics(live_server)
    for name, label_set, added in [
        (f"{prefix}_total", labels, 7),
        (f"{prefix}_duration_seconds_count", labels, 7),
        (f"{prefix}_duration_seconds_bucket", labels + ',le="+Inf"', 7),
        (f"{prefix}_total", bad, 1),
    ]:
        assert _sample(after, name, label_set) - _sample(before, name, label_set) == added, name
    seconds = _sample(after, f"{prefix}_duration_seconds_sum", labels) - _sample(
        before, f"{prefix}_duration_seconds_sum", labels
    )
    assert 0 < seconds < 7 * 5
    # /metrics itself is in progress while it answers; nothing else is.
    assert _sample(after, f"{prefix}_in_progress", 'endpoint="/recommend"') == 0


def test_a_rejected_request_is_one_short_log_line_without_its_values(
    live_server: LiveServer,
) -> None:
    start = live_server.log_size()
    marker = f"client-value-{uuid.uuid4().hex}"
    for _ in range(20):
        status, answer = live_server.post("/recommend", {"user_id": marker, "k": 0})
        assert status == 400 and answer["detail"][0]["loc"] == ["k"]
    deadline = time.monotonic() + 10
    while live_server.log(start).count("rejected POST /recommend: 400") < 20:
        assert time.monotonic() < deadline, live_server.log(start)[-2000:]
        time.sleep(0.1)
    log = live_server.log(start)
    assert marker not in log and "Traceback" not in log
    lines = [line for line in log.splitlines() if "rejected POST /recommend" in line]
    assert all(len(line) < 160 for line in lines), lines[0]


def _raw(server: LiveServer, data: bytes, timeout: float = 10) -> bytes:
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        sock.sendall(data)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
        return received


def test_request_headers_are_bounded_in_size(live_server: LiveServer) -> None:
    request = b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Pad: "
    assert _raw(live_server, request + b"a" * 8_000 + b"\r\n\r\n").startswith(b"HTTP/1.1 200")
    answer = _raw(live_server, request + b"a" * (1 << 20) + b"\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 431"), answer[:100]


def test_slow_request_headers_are_cut_off(live_server: LiveServer) -> None:
    # Half a request line, then nothing: answered 408 and closed at the 2 s header deadline
    # (uvicorn alone kept such connections open indefinitely).
    answer = _raw(live_server, b"GET /readyz HTTP/1.1\r\nHo", timeout=30)
    assert answer.startswith(b"HTTP/1.1 408"), answer[:100]


@pytest.mark.parametrize(
    "content_type",
    [
        "multipart/form-data",  # without a boundary: once a 500
        "multipart/form-data; boundary=x",
        "application/x-www-form-urlencoded",
        "text/plain",
        None,
    ],
)
def test_only_json_bodies_are_accepted(live_server: LiveServer, content_type) -> None:
    headers = {} if content_type is None else {"Content-Type": content_type}
    status, answer = live_server.request("POST", "/recommend", b'{"user_id": "u0"}', headers)
    assert status == 415 and b"content-type" in answer
    json_status, _ = live_server.post(
        "/recommend", {"user_id": "u0"}, headers={"Content-Type": "application/json; charset=utf-8"}
    )
    assert json_status == 200


def test_wrong_methods_are_405_not_415(live_server: LiveServer) -> None:
    assert live_server.request("POST", "/healthz", b"")[0] == 405
    assert live_server.request("DELETE", "/metrics")[0] == 405


@pytest.mark.parametrize(
    ("authorization", "status"),
    [
        (f"Bearer {'live-server-token'}", 200),
        ("bearer live-server-token", 200),
        ("BEARER live-server-token", 200),
        ("Bearer  live-server-token", 200),
        ("Bearer wrong", 401),
        ("Basic live-server-token", 401),
        ("live-server-token", 401),
        ("", 401),
    ],
)
def test_bearer_scheme_is_case_insensitive(live_server: LiveServer, authorization, status) -> None:
    got, _ = live_server.post(
        "/recommend", {"user_id": "u0"}, headers={"Authorization": authorization}, token=False
    )
    assert got == status


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "u0", "k": True}, "k"),
        ({"user_id": "u0", "k": "10"}, "k"),
        ({"user_id": "u0", "k": 10.0}, "k"),
        ({"user_id": "u0", "exclude_seen": "true"}, "exclude_seen"),
        ({"user_id": "u0", "exclude_seen": 1}, "exclude_seen"),
        ({"user_id": True}, "user_id"),
        ({"user_id": 1.5}, "user_id"),
        ({"user_id": 10**19}, "user_id"),
        ({"user_id": "u0", "k": MAX_ANSWER_ITEMS + 1}, "k"),
    ],
)
def test_inputs_are_strict(live_server: LiveServer, body, field) -> None:
    status, answer = live_server.post("/recommend", body)
    assert status == 400, answer
    assert answer["detail"][0]["loc"][0] == field


def test_integer_ids_are_read_as_strings(live_server: LiveServer) -> None:
    status, answer = live_server.post("/recommend", {"user_id": 42, "k": 2})
    assert status == 200 and answer["user_id"] == "42" and answer["fallback"] is True


def test_extreme_ratings_are_a_4xx_naming_the_field(live_server: LiveServer) -> None:
    status, answer = live_server.post(
        "/recommend_for_items", {"item_ids": ["i1", "i2"], "ratings": [3, 1e20]}
    )
    assert status == 400 and answer["detail"][0]["loc"] == ["ratings", 1]
    for ratings in ([True], ["5"]):
        status, answer = live_server.post(
            "/recommend_for_items", {"item_ids": ["i1"], "ratings": ratings}
        )
        assert status == 400 and answer["detail"][0]["loc"] == ["ratings", 0]
    # The largest accepted rating, summed over a thousand copies of one item, still solves.
    body = {"item_ids": ["i1"] * 1000, "ratings": [MAX_RATING] * 1000, "k": 3}
    status, answer = live_server.post("/recommend_for_items", body)
    assert status == 200 and len(answer["items"]) == 3


def test_answer_size_is_capped(live_server: LiveServer) -> None:
    users = [f"u{i % 40}" for i in range(MAX_BATCH_USERS)]
    status, answer = live_server.post("/recommend_batch", {"user_ids": users, "k": MAX_BATCH_K})
    assert status == 200
    assert sum(len(result["items"]) for result in answer["results"]) <= MAX_ANSWER_ITEMS
    status, answer = live_server.post(
        "/recommend_batch", {"user_ids": ["u1"], "k": MAX_BATCH_K + 1}
    )
    assert status == 400 and answer["detail"][0]["loc"] == ["k"]
    status, answer = live_server.post("/recommend", {"user_id": "u1", "k": N_ITEMS + 1})
    assert status == 400 and answer["field"] == "k"


def test_openapi_document_is_true_to_the_answers(live_server: LiveServer) -> None:
    status, body = live_server.request("GET", "/docs.json")
    assert status == 200
    spec = json.loads(body)
    assert spec["info"]["version"] == walsrec.__version__
    assert spec["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
    schemas = spec["components"]["schemas"]
    assert schemas["ErrorResponse"]["properties"]["detail"]["type"] == "array"
    for path in (
        "/recommend", "/recommend_batch", "/recommend_for_items", "/score", "/rank",
        "/similar_users",
    ):  # fmt: skip
        operation = spec["paths"][path]["post"]
        assert {"200", "400", "401", "413", "415"} <= set(operation["responses"])
        assert operation["security"] == [{"bearer": []}]
        request = operation["requestBody"]["content"]["application/json"]["schema"]
        k = request["properties"].get("k")
        assert k is None or k["maximum"] <= N_ITEMS
        where = request["properties"].get("where")
        # This model has no item table: the document allows no `where` field at all.
        assert where is None or (where["maxProperties"] == 0 and not where["properties"])
    answer = spec["paths"]["/recommend_for_items"]["post"]["responses"]["200"]
    user_id = answer["content"]["application/json"]["schema"]["properties"]["user_id"]
    assert user_id["nullable"] is True
    assert live_server.request("GET", "/docs.json", token=False)[0] == 401


def test_a_model_that_fails_validation_is_never_ready(tmp_path) -> None:
    tag = save_to_model_store(
        synthetic_model(), model_name="walsrec", model_version="9", bento_model_name="walsrec-bad"
    )
    folder = Path(bentoml.models.get(tag).path)
    factors = np.load(folder / "user_factors.npy")
    factors[3] = np.nan  # a NaN row whose checksum matches: only validation can catch it
    np.save(folder / "user_factors.npy", factors, allow_pickle=False)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["checksums"]["user_factors.npy"] = file_sha256(folder / "user_factors.npy")
    (folder / "metadata.json").write_text(json.dumps(meta))

    server = start_server(tag, tmp_path / "server.log", ready=False)
    try:
        deadline = time.monotonic() + 120
        while "not serving model" not in server.log():
            assert server.process.poll() is None and time.monotonic() < deadline, server.log()
            time.sleep(0.2)
        time.sleep(1)  # the worker finishes starting
        assert server.request("GET", "/livez")[0] == 200
        assert server.request("GET", "/readyz")[0] == 503
        with pytest.raises(WalsrecError, match="model failed validation"):  # run.py serve's wait
            wait_until_ready(f"{server.url}/readyz", server.process, timeout=30)
        assert server.post("/recommend", {"user_id": "u0"})[0] == 503
        log = server.log()
        (line,) = [line for line in log.splitlines() if "not serving model" in line]
        assert tag in line and "ZenML version 9" in line and "user_factors.npy" in line
        assert "Traceback" not in log
    finally:
        stop_server(server.process, timeout=30)


def test_a_set_but_empty_token_refuses_to_start(packaged_model: str, tmp_path) -> None:
    log = tmp_path / "server.log"
    server = start_server(packaged_model, log, ready=False, WALSREC_API_TOKEN="")
    assert server.process.wait(timeout=120) != 0
    assert "WALSREC_API_TOKEN is set but empty" in server.log()
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("WALSREC_API_TOKEN", " ")
        with pytest.raises(WalsrecError, match="WALSREC_API_TOKEN is set but empty"):
            serve(model_tag=packaged_model, echo=lambda _: None)
