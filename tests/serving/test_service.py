"""Every endpoint and every error of the service, in-process through its ASGI app."""

from __future__ import annotations

import numpy as np
import pytest
from starlette.testclient import TestClient

from serving.schemas import MAX_BATCH_USERS
from tests.serving.conftest import N_ITEMS, guard_options
from walsrec.models.fold_in import FoldIn


def _ids(answer: dict) -> list[str]:
    return [item["item_id"] for item in answer["items"]]


def _ranked(scores: np.ndarray, k: int, skip: set[int] = frozenset()) -> list[str]:
    order = [i for i in np.argsort(-scores, kind="stable") if i not in skip]
    return [f"i{i}" for i in order[:k]]


def _field_in(response) -> str:
    """The field a 4xx names: ours say `field`; BentoML's validation errors give `loc`."""
    body = response.json()
    if "field" in body:
        return body["field"]
    return ".".join(str(part) for part in body["detail"][0]["loc"])


def test_recommend_ranks_by_score_and_excludes_seen_items(client, model) -> None:
    response = client.post("/recommend", json={"user_id": "u0", "k": 5})
    assert response.status_code == 200
    answer = response.json()
    scores = model.item_factors @ model.user_factors[0]
    assert answer["fallback"] is False
    assert _ids(answer) == _ranked(scores, 5, skip={0, 1, 2, 3, 4})
    returned = [int(item_id[1:]) for item_id in _ids(answer)]
    np.testing.assert_allclose([i["score"] for i in answer["items"]], scores[returned], rtol=1e-5)

    with_seen = client.post("/recommend", json={"user_id": "u0", "k": 5, "exclude_seen": False})
    assert _ids(with_seen.json()) == _ranked(scores, 5)


def test_recommend_titles_and_integer_ids(client) -> None:
    answer = client.post("/recommend", json={"user_id": 3, "k": N_ITEMS}).json()
    assert answer["user_id"] == "3"  # read as the string id "3", unknown here
    answer = client.post("/recommend", json={"user_id": "u3", "k": N_ITEMS}).json()
    titles = {item["item_id"]: item["title"] for item in answer["items"]}
    if "i1" in titles:
        assert titles["i1"] == "Item One"
    assert {title for item, title in titles.items() if item != "i1"} == {None}


def test_allow_and_deny_lists_restrict_candidates_and_list_unknown_ids(client, model) -> None:
    allow = ["i10", "i11", "i12", "i13", "nope"]
    answer = client.post(
        "/recommend",
        json={"user_id": "u1", "k": 3, "allow_items": allow, "deny_items": ["i12", "nope2"]},
    ).json()
    scores = model.item_factors @ model.user_factors[1]
    seen = set(model.seen[1].indices)
    expected = [f"i{i}" for i in sorted({10, 11, 13} - seen, key=lambda i: -scores[i])][:3]
    assert _ids(answer) == expected
    assert answer["unknown_items"] == ["nope", "nope2"]


def test_unknown_user_gets_the_flagged_popularity_fallback(client, model) -> None:
    answer = client.post("/recommend", json={"user_id": "stranger", "k": 3}).json()
    assert answer["fallback"] is True
    assert _ids(answer)[0] == "i7"  # the most popular item
    assert [i["score"] for i in answer["items"]] == sorted(model.item_popularity, reverse=True)[:3]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_id": "u0", "k": 0}, "k"),
        ({"user_id": "u0", "k": N_ITEMS + 1}, "k"),
        ({"user_id": "u0", "k": "ten"}, "k"),
        ({"user_id": "u0", "k": 2.5}, "k"),
        ({"user_id": ["u0"]}, "user_id"),
        ({"user_id": ""}, "user_id"),
        ({}, "user_id"),
        ({"user_id": "u0", "allow_items": "i1"}, "allow_items"),
        ({"user_id": "u0", "exclude_seen": "maybe"}, "exclude_seen"),
    ],
)
def test_recommend_rejects_bad_fields_with_a_4xx_naming_them(client, body, field) -> None:
    response = client.post("/recommend", json=body)
    assert response.status_code == 400
    assert _field_in(response) == field


@pytest.mark.parametrize(
    "where",
    [
        "shoes",
        {"category": {"is": "shoes"}},
        {"category": []},
        {"category": ["x"] * 101},
        {f"field{i}": 1 for i in range(17)},
        # The synthetic model has no item table: a 400 naming `where`, not a 5xx.
        {"category": "shoes"},
    ],
)
def test_bad_where_conditions_are_a_400_naming_where(client, where) -> None:
    for path, body in [
        ("/recommend", {"user_id": "u0"}),
        ("/recommend_batch", {"user_ids": ["u0"]}),
        ("/rank", {"user_id": "u0", "item_ids": ["i1"]}),
    ]:
        response = client.post(path, json={**body, "where": where})
        assert response.status_code == 400, (path, response.text)
        assert _field_in(response).split(".")[0] == "where"


def test_malformed_json_is_a_400(client) -> None:
    response = client.post(
        "/recommend", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert response.status_code == 400


def test_recommend_batch_answers_each_user(client) -> None:
    answer = client.post("/recommend_batch", json={"user_ids": ["u0", "who", "u2"], "k": 2})
    assert answer.status_code == 200
    results = answer.json()["results"]
    assert [r["user_id"] for r in results] == ["u0", "who", "u2"]
    assert [r["fallback"] for r in results] == [False, True, False]
    single = client.post("/recommend", json={"user_id": "u2", "k": 2}).json()
    # The same answer; scores to float32 rounding (BLAS sums a 1-row and a 2-row product in
    # different orders on some machines).
    batch_scores = [item.pop("score") for item in results[2]["items"]]
    assert batch_scores == pytest.approx([item.pop("score") for item in single["items"]], rel=1e-6)
    assert results[2] == single


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"user_ids": []}, "user_ids"),
        ({"user_ids": ["u1"] * (MAX_BATCH_USERS + 1)}, "user_ids"),
        ({"user_ids": ["u1"], "k": N_ITEMS + 1}, "k"),
    ],
)
def test_recommend_batch_rejects_bad_fields(client, body, field) -> None:
    response = client.post("/recommend_batch", json=body)
    assert response.status_code == 400
    assert _field_in(response) == field


def test_recommend_for_items_folds_the_new_user_in(client, model) -> None:
    body = {"item_ids": ["i3", "i9", "unknown"], "ratings": [5, 2, 1], "k": 4}
    answer = client.post("/recommend_for_items", json=body).json()
    fold_in = FoldIn(model.config, model.item_factors, None, 0.0, model.item_popularity)
    factors, _ = fold_in.solve(np.array([3, 9]), np.array([5.0, 2.0]))
    scores = model.item_factors @ factors
    assert answer["fallback"] is False
    assert _ids(answer) == _ranked(scores, 4, skip={3, 9})
    assert answer["unknown_items"] == ["unknown"]


def test_recommend_for_only_unknown_items_falls_back_to_popularity(client) -> None:
    answer = client.post("/recommend_for_items", json={"item_ids": ["x", "y"], "k": 2}).json()
    assert answer["fallback"] is True and _ids(answer)[0] == "i7"
    assert answer["unknown_items"] == ["x", "y"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"item_ids": []}, "item_ids"),
        ({"item_ids": ["i1", "i2"], "ratings": [1.0]}, "ratings"),
        ({"item_ids": ["i1"], "ratings": [-1.0]}, "ratings.0"),
        ({"item_ids": ["i1"], "k": 0}, "k"),
    ],
)
def test_recommend_for_items_rejects_bad_fields(client, body, field) -> None:
    response = client.post("/recommend_for_items", json=body)
    assert response.status_code == 400
    assert _field_in(response) == field


def test_similar_items_by_cosine(client, model) -> None:
    answer = client.post("/similar_items", json={"item_id": "i5", "k": 3}).json()
    unit = model.item_factors / np.linalg.norm(model.item_factors, axis=1, keepdims=True)
    assert _ids(answer) == _ranked(unit @ unit[5], 3, skip={5})
    missing = client.post("/similar_items", json={"item_id": "nope"})
    assert missing.status_code == 404 and _field_in(missing) == "item_id"


def test_similar_users_by_cosine(client, model) -> None:
    answer = client.post("/similar_users", json={"user_id": "u3", "k": 4}).json()
    unit = model.user_factors / np.linalg.norm(model.user_factors, axis=1, keepdims=True)
    assert [user["user_id"] for user in answer["users"]] == [
        "u" + item[1:] for item in _ranked(unit @ unit[3], 4, skip={3})
    ]
    missing = client.post("/similar_users", json={"user_id": "nobody"})
    assert missing.status_code == 404 and _field_in(missing) == "user_id"


def test_explain_splits_the_score_into_the_users_items(client, model) -> None:
    answer = client.post("/explain", json={"user_id": "u0", "item_id": "i9", "k": 3}).json()
    full = model.explain("u0", "i9", N=None)
    assert answer["score"] == pytest.approx(full.score, rel=1e-6)
    assert len(answer["contributions"]) == 3
    assert [c["item_id"] for c in answer["contributions"]] == [i for i, _ in full.contributions[:3]]
    assert {i for i, _ in full.contributions} == {"i0", "i1", "i2", "i3", "i4"}  # u0's items
    total = sum(value for _, value in full.contributions) + answer["non_item_terms"]
    assert total == pytest.approx(answer["score"], rel=1e-5)
    # The folded-in score is the model's own score of the item for this user's items.
    folded = model.recommend(
        "u0",
        N=model.n_items,
        recalculate_user=True,
        user_items=model.seen[0],
        filter_already_liked_items=False,
    )
    assert answer["score"] == pytest.approx(float(folded[1][list(folded[0]).index("i9")]), rel=1e-5)
    for body, field in [
        ({"user_id": "nobody", "item_id": "i1"}, "user_id"),
        ({"user_id": "u0", "item_id": "nope"}, "item_id"),
    ]:
        missing = client.post("/explain", json=body)
        assert missing.status_code == 404 and _field_in(missing) == field


def test_rank_reorders_the_callers_candidates(client, model) -> None:
    body = {"user_id": "u0", "item_ids": ["i2", "i30", "i9", "zz"]}  # u0 has seen i2
    answer = client.post("/rank", json=body).json()
    scores = model.predict(np.zeros(3, dtype=np.int64), np.array([2, 30, 9]))
    expected = [f"i{i}" for i in np.array([2, 30, 9])[np.argsort(-scores, kind="stable")]]
    assert _ids(answer) == expected and answer["unknown_items"] == ["zz"]
    seen_dropped = client.post("/rank", json={**body, "exclude_seen": True}).json()
    assert _ids(seen_dropped) == [item for item in expected if item != "i2"]
    too_many = client.post("/rank", json={"user_id": "u0", "item_ids": ["i1"] * 10_001})
    assert too_many.status_code == 400 and _field_in(too_many) == "item_ids"


def test_score_predicts_and_lists_unknown_items(client, model) -> None:
    answer = client.post("/score", json={"user_id": "u4", "item_ids": ["i2", "zz", "i8"]}).json()
    expected = model.predict(np.array([4, 4]), np.array([2, 8]))
    assert [s["item_id"] for s in answer["scores"]] == ["i2", "i8"]
    np.testing.assert_allclose([s["score"] for s in answer["scores"]], expected, rtol=1e-5)
    assert answer["unknown_items"] == ["zz"] and answer["fallback"] is False
    stranger = client.post("/score", json={"user_id": "who", "item_ids": ["i7"]}).json()
    assert stranger["fallback"] is True
    assert stranger["scores"][0]["score"] == model.item_popularity[7]
    empty = client.post("/score", json={"user_id": "u4", "item_ids": []})
    assert empty.status_code == 400 and _field_in(empty) == "item_ids"


def test_model_info_reports_version_and_metrics(client, packaged_model) -> None:
    info = client.post("/model_info", json={}).json()
    assert info["bento_model"] == packaged_model
    assert (info["model_name"], info["model_version"]) == ("walsrec", "7")
    assert info["metrics"]["wals"]["ndcg@10"] == 0.25
    assert (info["n_users"], info["n_items"], info["n_factors"]) == (40, 60, 8)
    assert info["trained_at"].startswith("2024-01-01")


def test_health_and_readiness(client) -> None:
    for path in ("/healthz", "/livez", "/readyz"):
        assert client.get(path).status_code == 200


@pytest.fixture
def guarded(service):
    """The service with a token and a small body cap (restored afterwards)."""
    options = guard_options(service)
    saved = dict(options)
    options.update(token="s3cret", max_body_bytes=2048)
    try:
        with TestClient(service.to_asgi()) as test_client:
            yield test_client
    finally:
        options.clear()
        options.update(saved)


def test_bearer_token_guards_everything_but_health(guarded) -> None:
    body = {"user_id": "u0"}
    assert guarded.post("/recommend", json=body).status_code == 401
    wrong = guarded.post("/recommend", json=body, headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401 and "authorization" in wrong.json()["error"]
    ok = guarded.post("/recommend", json=body, headers={"Authorization": "Bearer s3cret"})
    assert ok.status_code == 200
    assert guarded.get("/docs.json").status_code == 401
    assert guarded.get("/readyz").status_code == 200
    assert guarded.get("/healthz").status_code == 200


def test_request_bodies_are_size_capped(guarded) -> None:
    auth = {"Authorization": "Bearer s3cret"}
    big = {"user_id": "u0", "deny_items": ["i1"] * 1000}
    response = guarded.post("/recommend", json=big, headers=auth)
    assert response.status_code == 413 and response.json()["error"].startswith("body")

    def chunks():  # no Content-Length: counted as it streams
        yield b'{"user_id": "u0", "deny_items": ['
        for _ in range(500):
            yield b'"i1", '
        yield b'"i2"]}'

    streamed = guarded.post(
        "/recommend", content=chunks(), headers={**auth, "content-type": "application/json"}
    )
    assert streamed.status_code == 413
