"""The service's fold-in (walsrec.models.fold_in, NumPy) agrees with the trained model's users.

That it is exactly the training's own solve, for every weighting, mode and bias setting, is
tested in tests/core/test_wals.py (test_fold_in_is_the_training_user_solve)."""

from __future__ import annotations

import numpy as np
import pytest

from walsrec.models.fold_in import FoldIn
from walsrec.models.wals import WALSConfig


@pytest.fixture(scope="module")
def trained(ml100k_dir):
    from walsrec.data import SplitConfig, build_dataset, load_source
    from walsrec.training import train_model

    dataset = build_dataset(load_source(str(ml100k_dir)), split=SplitConfig(test_ratio=0.25))
    config = WALSConfig(n_factors=16, regularization=30.0, alpha=1.0, epochs=8, jit_compile=False)
    return train_model(dataset, config, validation_every_epoch=False)


def _top10_agreement(model, n_users: int = 50) -> float:
    """Mean overlap of a known user's top-10 with the top-10 of their fold-in from their own
    training items (and values), through the service's code."""
    from serving.recommender import OnlineRecommender

    online = OnlineRecommender(model)
    overlaps = []
    for user in np.linspace(0, model.n_users - 1, n_users).astype(int):
        start, stop = model.seen.indptr[user], model.seen.indptr[user + 1]
        items = [str(model.item_ids[i]) for i in model.seen.indices[start:stop]]
        values = model.seen.data[start:stop].tolist()
        stored = online.recommend(str(model.user_ids[user]), k=10)
        folded = online.recommend_for_items(items, values, k=10)
        overlaps.append(
            len({i["item_id"] for i in stored["items"]} & {i["item_id"] for i in folded["items"]})
        )
    return float(np.mean(overlaps))


@pytest.mark.parametrize("method", ["ease", "knn"])
def test_fold_in_of_a_known_user_reproduces_their_blended_top_10(trained, method) -> None:
    from walsrec.models.ensemble import BlendConfig, blend_model

    blended = blend_model(trained, BlendConfig(item_item_weight=0.5, method=method))
    assert blended.blended
    # Fold-in solves the WALS part only and adds the item-item part of the given items: the
    # blend's own formula, so the stored top-10 comes back.
    assert _top10_agreement(blended) >= 9.0
    assert _top10_agreement(trained) >= 9.0  # WALS alone, as before


def test_service_logic_scores_a_blended_model_with_the_blend_formula() -> None:
    from serving.recommender import OnlineRecommender
    from tests.serving.conftest import synthetic_model
    from walsrec.models.ensemble import BlendConfig, blend_model

    model = blend_model(synthetic_model(), BlendConfig(item_item_weight=0.4, method="knn"))
    online = OnlineRecommender(model)
    scores = model.score_users(np.array([0]))[0]
    expected = [model.item_ids[i] for i in np.argsort(-scores, kind="stable") if i >= 5][:6]
    answer = online.recommend("u0", k=6)  # u0 has seen i0..i4
    assert [item["item_id"] for item in answer["items"]] == expected
    np.testing.assert_allclose(
        [item["score"] for item in answer["items"]],
        [scores[int(item[1:])] for item in expected],
        rtol=1e-5,
    )

    scored = online.score("u0", ["i9", "i20"])["scores"]
    np.testing.assert_allclose([s["score"] for s in scored], scores[[9, 20]], rtol=1e-5)

    # A new user: WALS fold-in of the given items, plus those items' item-item part.
    fold_in = FoldIn(model.config, model.item_factors, None, 0.0, model.item_popularity)
    factors, _ = fold_in.solve(np.array([3, 9]), np.array([5.0, 2.0]))
    row = np.zeros(model.n_items, np.float32)
    row[[3, 9]] = 1.0
    new_scores = 0.6 * (model.item_factors @ factors) + 0.4 * (row @ model.item_item.toarray())
    answer = online.recommend_for_items(["i3", "i9"], [5, 2], k=4)
    ranked = [f"i{i}" for i in np.argsort(-new_scores, kind="stable") if i not in (3, 9)][:4]
    assert [item["item_id"] for item in answer["items"]] == ranked


def test_huge_confidences_still_solve_to_finite_factors() -> None:
    # A rating of 1e20 swamps the regularization in float64 and made the Cholesky factorization
    # fail (a 500 from /recommend_for_items); the solve falls back to least squares.
    rng = np.random.default_rng(3)
    item_factors = rng.normal(0, 0.3, (50, 8)).astype(np.float32)
    fold_in = FoldIn({"alpha": 10.0, "regularization": 0.05}, item_factors, None, 0.0, None)
    factors, _ = fold_in.solve(np.array([1, 2]), np.array([1e20, 1.0]))
    assert factors.shape == (8,) and np.all(np.isfinite(factors))
