"""The fast path (serving/fast_path.py) answers exactly what BentoML's routing answers."""

from __future__ import annotations

import json

import pytest

from serving import schemas
from serving.fast_path import HEAVY_ITEMS, request_items
from tests.serving.conftest import N_ITEMS, guard_options

ANSWERS = {
    "/recommend": schemas.Recommendations,
    "/recommend_batch": schemas.BatchRecommendations,
    "/recommend_for_items": schemas.Recommendations,
    "/rank": schemas.Recommendations,
    "/similar_items": schemas.SimilarItems,
    "/similar_users": schemas.SimilarUsers,
    "/score": schemas.Scores,
    "/model_info": schemas.ModelInfo,
    "/explain": schemas.Explanation,
}

REQUESTS = [
    ("/recommend", {"user_id": "u0", "k": 3}),
    ("/recommend", {"user_id": 17, "k": 2, "deny_items": ["i1", "zz"]}),
    ("/recommend", {"user_id": "stranger"}),
    ("/recommend", {"user_id": "u0", "k": 0}),
    ("/recommend", {"user_id": "u0", "k": N_ITEMS + 1}),  # the model's rule: {"error", "field"}
    ("/recommend", {"user_id": "u0", "k": True}),
    ("/recommend", {"user_id": "u0", "where": {"category": "x"}}),
    ("/recommend", {}),
    ("/recommend", b"{not json"),
    ("/recommend", b""),
    ("/recommend", {"user_id": "é-ü", "k": "ten", "extra": 1}),
    ("/recommend_batch", {"user_ids": ["u0", "who", "u2"], "k": 2}),
    ("/recommend_for_items", {"item_ids": ["i1", "i2"], "ratings": [5, 1e7], "k": 2}),
    ("/recommend_for_items", {"item_ids": ["i1", "i2"], "ratings": [5], "k": 2}),
    ("/similar_items", {"item_id": "nope"}),
    ("/similar_users", {"user_id": "u1", "k": 2}),
    ("/rank", {"user_id": "u0", "item_ids": ["i3", "i9", "zz"]}),
    ("/explain", {"user_id": "u0", "item_id": "i9", "k": 2}),
    ("/explain", {"user_id": "u0", "item_id": "zz"}),
    ("/score", {"user_id": "u4", "item_ids": ["i2", "zz"]}),
    ("/model_info", {}),
]


@pytest.fixture
def both(service, monkeypatch):
    """Test clients of the service with and without the fast path, and the fast path's calls."""
    from starlette.testclient import TestClient

    options = guard_options(service)
    fast_path = options["fast_path"]
    assert fast_path is not None, "the fast path is on by default"
    calls: list[str] = []
    answer = fast_path.answer

    async def counted(scope, body, send):
        calls.append(scope["path"])
        await answer(scope, body, send)

    monkeypatch.setattr(fast_path, "answer", counted)
    with TestClient(service.to_asgi()) as fast:
        options["fast_path"] = None
        try:
            with TestClient(service.to_asgi()) as routed:
                yield fast, routed, calls
        finally:
            options["fast_path"] = fast_path


@pytest.mark.parametrize(
    ("path", "body"), REQUESTS, ids=[f"{p}-{i}" for i, (p, _) in enumerate(REQUESTS)]
)
def test_fast_path_answers_as_bentoml_routing_does(both, path, body) -> None:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": "application/json"}
    fast_client, routed_client, calls = both
    fast = fast_client.post(path, content=content, headers=headers)
    assert calls == [path]  # answered by the fast path
    routed = routed_client.post(path, content=content, headers=headers)
    assert calls == [path]  # and this one by BentoML's routing
    assert fast.status_code == routed.status_code
    assert fast.json() == routed.json()
    assert fast.headers["content-type"].startswith("application/json")
    if fast.status_code == 200:
        # Exactly the declared answer's serialization: every field present, nothing extra.
        answer = fast.json()
        assert ANSWERS[path].model_validate(answer).model_dump(mode="json") == answer
    else:
        assert schemas.ErrorResponse.model_validate(fast.json()).error


def test_heavy_requests_are_told_from_light_ones() -> None:
    assert request_items({"user_id": "u", "k": 10}) == 10
    assert request_items({"user_ids": ["u"] * 100, "k": 50}) == 5000 > HEAVY_ITEMS
    assert request_items({"user_id": "u", "item_ids": ["i"] * 2000, "k": None}) == 2000
    assert request_items({"user_id": "u", "k": 10, "deny_items": ["i"] * 10}) == 10


@pytest.mark.parametrize(
    ("path", "body", "on_the_loop"),
    [
        ("/recommend", {"user_id": "u0", "k": 3}, True),
        ("/rank", {"user_id": "u0", "item_ids": ["i3", "i9"]}, True),
        ("/score", {"user_id": "u0", "item_ids": ["i3"]}, True),
        ("/recommend", {"user_id": "u0", "allow_items": ["i1"] * (HEAVY_ITEMS + 1)}, False),
        ("/recommend_batch", {"user_ids": ["u0", "u1"], "k": 2}, False),
        ("/recommend_for_items", {"item_ids": ["i1"], "k": 2}, False),
        ("/similar_users", {"user_id": "u1", "k": 2}, False),
        ("/explain", {"user_id": "u0", "item_id": "i9"}, False),
    ],
)
def test_only_small_requests_are_computed_on_the_event_loop(
    service, monkeypatch, path, body, on_the_loop
) -> None:
    """One user's top-k over a bounded catalogue runs on the event loop (a thread hand-off cost
    more than the work); batches, fold-ins, user-user similarity and long lists go to threads."""
    import threading

    from starlette.testclient import TestClient

    import serving.service
    from serving.recommender import OnlineRecommender

    method = path.strip("/")
    original = getattr(OnlineRecommender, method)
    threads: list[str] = []

    def recorded(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(OnlineRecommender, method, recorded)
    with TestClient(service.to_asgi()) as client:
        loop_thread = client.portal.call(lambda: threading.current_thread().name)
        response = client.post(path, json=body)
        assert response.status_code == 200, response.text
        assert len(threads) == 1
        assert (threads[0] == loop_thread) is on_the_loop
        # Over the catalogue bound, one user's top-k goes to the threads too.
        if path == "/recommend" and on_the_loop:
            monkeypatch.setattr(serving.service, "INLINE_MAX_CATALOGUE", N_ITEMS - 1)
            assert client.post(path, json=body).status_code == 200
            assert threads[1] != loop_thread


def test_the_guard_is_outermost(service) -> None:
    """The guard wraps the whole app BentoML builds: what it answers (rejections, the fast
    path) never enters BentoML's middleware stack."""
    from serving.guard import RequestGuard

    app = service.to_asgi()
    assert isinstance(app, RequestGuard)
    assert not any(cls is RequestGuard for cls, _ in service.middlewares)
