"""`OnlineRecommender`'s vectorized batch against its one-user answers (no server needed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from serving import recommender as recommender_module
from serving.recommender import OnlineRecommender, RequestError
from serving.schemas import MAX_ANSWER_ITEMS
from tests.serving.conftest import N_USERS, synthetic_model
from walsrec.models.ensemble import BlendConfig, blend_model


@pytest.fixture(params=["wals", "blended", "biased"])
def engine(request) -> OnlineRecommender:
    model = synthetic_model(seed=5)
    if request.param == "blended":
        model = blend_model(model, BlendConfig(item_item_weight=0.4, method="knn"))
        assert model.blended
    if request.param == "biased":
        rng = np.random.default_rng(1)
        model = dataclasses.replace(
            model,
            user_bias=rng.normal(size=model.n_users).astype(np.float32),
            item_bias=rng.normal(size=model.n_items).astype(np.float32),
            global_mean=3.0,
        )
    return OnlineRecommender(model)


@pytest.mark.parametrize("exclude_seen", [True, False])
def test_batch_equals_one_user_at_a_time(engine, exclude_seen, monkeypatch) -> None:
    # Small score blocks, so the batch spans several matrix products.
    monkeypatch.setattr(recommender_module, "SCORE_BLOCK_ELEMENTS", 7 * engine.n_items)
    users = [f"u{i}" for i in range(N_USERS)] + ["stranger", "u3"]
    batch = engine.recommend_batch(users, k=6, exclude_seen=exclude_seen)["results"]
    for user, answer in zip(users, batch, strict=True):
        single = engine.recommend(user, k=6, exclude_seen=exclude_seen)
        assert answer["user_id"] == single["user_id"] and answer["fallback"] == single["fallback"]
        assert [i["item_id"] for i in answer["items"]] == [i["item_id"] for i in single["items"]]
        np.testing.assert_allclose(
            [i["score"] for i in answer["items"]], [i["score"] for i in single["items"]], rtol=1e-5
        )


def test_known_user_scores_match_the_model(engine) -> None:
    answer = engine.recommend("u2", k=engine.n_items, exclude_seen=False)
    expected = engine.model.score_users(np.array([2]))[0]
    got = {item["item_id"]: item["score"] for item in answer["items"]}
    for index, item_id in enumerate(engine.item_ids):
        assert got[item_id] == pytest.approx(float(expected[index]), rel=1e-5, abs=1e-5)


def test_users_times_k_is_capped(engine, monkeypatch) -> None:
    monkeypatch.setattr(recommender_module, "MAX_ANSWER_ITEMS", 100)
    engine.recommend_batch(["u1"] * 10, k=10)
    with pytest.raises(RequestError) as error:
        engine.recommend_batch(["u1"] * 11, k=10)
    assert error.value.field == "k" and "110" in error.value.message
    assert MAX_ANSWER_ITEMS >= 10_000


def test_rank_orders_the_given_candidates_by_score_and_keeps_seen_items(engine) -> None:
    user = engine.user_position["u0"]  # u0 has seen i0..i4
    candidates = ["i3", "i10", "i0", "nope", "i20", "i10"]
    answer = engine.rank("u0", candidates)
    ranked = [item["item_id"] for item in answer["items"]]
    assert sorted(ranked) == ["i0", "i10", "i20", "i3"]  # seen kept, duplicate once
    expected = engine._user_scores(np.array([user]), exclude_seen=False)[0]
    scores = [expected[engine.item_position[item]] for item in ranked]
    assert scores == sorted(scores, reverse=True)
    assert [item["score"] for item in answer["items"]] == pytest.approx(scores, rel=1e-6)
    assert answer["unknown_items"] == ["nope"] and answer["fallback"] is False
    without_seen = engine.rank("u0", candidates, exclude_seen=True)
    assert [item["item_id"] for item in without_seen["items"]] == [
        item for item in ranked if item not in {"i0", "i3"}
    ]


def test_rank_for_an_unknown_user_orders_by_popularity(engine) -> None:
    answer = engine.rank("stranger", ["i1", "i7", "i2"])
    assert answer["fallback"] is True
    assert answer["items"][0]["item_id"] == "i7"  # the most popular item
    counts = [item["score"] for item in answer["items"]]
    assert counts == sorted(counts, reverse=True)


def test_similar_users_by_cosine_never_returns_users_without_factors(engine) -> None:
    model = dataclasses.replace(engine.model, user_factors=engine.model.user_factors.copy())
    model.user_factors[5] = 0.0  # a user with no interactions gets zero factors
    engine = OnlineRecommender(model)
    answer = engine.similar_users("u0", k=N_USERS - 1)
    found = [user["user_id"] for user in answer["users"]]
    assert "u0" not in found and "u5" not in found and len(found) == N_USERS - 2
    norms = np.linalg.norm(model.user_factors, axis=1, keepdims=True)
    factors = model.user_factors / np.maximum(norms, 1e-12)
    cosine = factors[1:] @ factors[0]
    best = 1 + int(np.nanargmax(np.where(np.arange(1, N_USERS) == 5, -np.inf, cosine)))
    assert found[0] == f"u{best}"
    with pytest.raises(RequestError) as error:
        engine.similar_users("stranger")
    assert error.value.field == "user_id" and error.value.status == 404


def test_similar_items_never_returns_items_without_factors() -> None:
    model = synthetic_model(seed=5)
    model.item_factors[9] = 0.0
    answer = OnlineRecommender(model).similar_items("i0", k=model.n_items - 1)
    found = [item["item_id"] for item in answer["items"]]
    assert "i9" not in found and "i0" not in found and len(found) == model.n_items - 2


def test_where_keeps_only_items_matching_the_item_table() -> None:
    model = synthetic_model(seed=5)
    fields = {
        "category": ["shoes" if i % 3 == 0 else "bags" if i % 3 == 1 else None for i in range(60)],
        "in_stock": [i % 2 == 0 for i in range(60)],
        "size": [i % 4 for i in range(60)],
    }
    engine = OnlineRecommender(model, fields)
    where = {"category": ["shoes", "bags"], "in_stock": True}
    answer = engine.recommend("u1", k=60, where=where)
    kept = {int(item["item_id"][1:]) for item in answer["items"]}
    expected = {i for i in range(60) if i % 3 != 2 and i % 2 == 0}
    expected -= set(model.seen[1].indices.tolist())
    assert kept == expected
    # JSON types: the number 1 is not the string "1", and 1.0 equals 1.
    assert {
        int(x["item_id"][1:]) for x in engine.recommend("u1", k=60, where={"size": 1.0})["items"]
    } <= {i for i in range(60) if i % 4 == 1}
    assert engine.recommend("u1", k=5, where={"size": "1"})["items"] == []
    batch = engine.recommend_batch(["u1", "stranger"], k=60, where=where)["results"]
    assert {int(x["item_id"][1:]) for x in batch[0]["items"]} == expected
    fallback = {int(x["item_id"][1:]) for x in batch[1]["items"]}  # popularity, filtered too
    assert batch[1]["fallback"] and fallback == {i for i in range(60) if i % 3 != 2 and i % 2 == 0}
    ranked = engine.rank("u1", ["i0", "i1", "i2", "i3"], where={"in_stock": False})
    assert {item["item_id"] for item in ranked["items"]} == {"i1", "i3"}
    with pytest.raises(RequestError) as error:
        engine.recommend("u1", where={"colour": "red"})
    assert error.value.field == "where.colour" and "category" in error.value.message
    with pytest.raises(RequestError) as error:
        OnlineRecommender(model).recommend("u1", where={"category": "shoes"})
    assert error.value.field == "where"
