"""`OnlineRecommender`'s vectorized batch against its one-user answers (no server needed)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from serving import recommender as recommender_module
from serving.recommender import OnlineRecommender, RequestError
from serving.schemas import MAX_ANSWER_ITEMS
from tests.serving.conftest import N_USERS, synthetic_model
from walsrec.ensemble import BlendConfig, blend_model


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


def test_an_item_without_factors_is_never_a_similar_item() -> None:
    # Training gives an item with no interactions exactly zero factors; cosine similarity
    # normalizes, so it must be excluded rather than ranked at similarity 0.
    model = synthetic_model(seed=5)
    model.item_factors[7] = 0.0
    online = OnlineRecommender(model)
    for item in range(20):
        if item == 7:
            continue
        answer = online.similar_items(f"i{item}", k=online.n_items - 2)
        assert "i7" not in {entry["item_id"] for entry in answer["items"]}
