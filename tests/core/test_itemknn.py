"""The item-item models and the blended model: memory, speed, the formula, the file format."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.errors import ConfigError, DataError
from walsrec.models.ensemble import BlendConfig, blend_model, item_item_matrix, resolve_method
from walsrec.models.itemknn import knn_item_weights, top_n_per_row
from walsrec.models.recommender import RecommenderModel, binary_rows, score_rows
from walsrec.synthetic import generate_interactions


def _model(train: sp.csr_matrix, n_factors: int = 6, seed: int = 0) -> RecommenderModel:
    """A model with random factors over `train` (the scoring formula does not care how the
    factors were found)."""
    rng = np.random.default_rng(seed)
    n_users, n_items = train.shape
    return RecommenderModel(
        user_factors=rng.normal(0, 0.3, (n_users, n_factors)).astype(np.float32),
        item_factors=rng.normal(0, 0.3, (n_items, n_factors)).astype(np.float32),
        user_bias=None,
        item_bias=None,
        global_mean=0.0,
        user_ids=np.array([f"u{i}" for i in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        seen=sp.csr_matrix(train, dtype=np.float32),
        item_popularity=np.asarray((train != 0).sum(axis=0)).ravel().astype(np.float64),
        config={"n_factors": n_factors, "regularization": 1.0, "alpha": 1.0},
    )


@pytest.fixture(scope="module")
def small() -> sp.csr_matrix:
    return generate_interactions(300, 400, 6000, feedback="counts", seed=3).to_csr()


def test_knn_weights_are_the_shrunk_cosine_top_n_of_each_item(small) -> None:
    neighbors, shrinkage = 7, 5.0
    weights = knn_item_weights(small, neighbors, shrinkage, block_entries=5000)  # many blocks
    # Reference, dense: shrunk cosine of the binary co-occurrence, own item excluded.
    binary = (small.toarray() != 0).astype(np.float64)
    counts = binary.sum(axis=0)
    similarity = (binary.T @ binary) / (np.sqrt(np.outer(counts, counts)) + shrinkage)
    np.fill_diagonal(similarity, 0.0)
    dense = weights.toarray()
    assert np.all(np.diag(dense) == 0)
    per_column = np.diff(weights.tocsc().indptr)
    assert per_column.max() == neighbors and weights.nnz <= small.shape[1] * neighbors
    for item in range(0, small.shape[1], 37):
        kept = np.flatnonzero(dense[:, item])
        nth = np.sort(similarity[:, item])[::-1][neighbors - 1]
        if nth > 0:
            assert len(kept) == neighbors
            assert similarity[kept, item].min() >= nth - 1e-12  # the N largest, nothing else
        # Normalized: each column sums to 1, proportional to the similarities.
        np.testing.assert_allclose(dense[kept, item].sum(), 1.0, rtol=1e-5)
        np.testing.assert_allclose(
            dense[kept, item], similarity[kept, item] / similarity[kept, item].sum(), rtol=1e-5
        )


def test_top_n_per_row_keeps_the_largest_entries() -> None:
    rng = np.random.default_rng(0)
    matrix = sp.random(50, 300, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    kept = top_n_per_row(matrix, 10).toarray()
    dense = matrix.toarray()
    for row in range(50):
        np.testing.assert_array_equal(np.sort(kept[row][kept[row] != 0]), np.sort(dense[row])[-10:])


def test_a_20000_item_catalogue_builds_in_seconds_in_o_items_times_n() -> None:
    train = generate_interactions(4000, 20_000, 150_000, feedback="binary", seed=1).to_csr()
    started = time.perf_counter()
    weights = knn_item_weights(train, 50, 10.0)
    seconds = time.perf_counter() - started
    assert weights.shape == (20_000, 20_000)
    assert weights.nnz <= 20_000 * 50  # O(n_items * N), never n_items^2
    assert seconds < 30, f"{seconds:.1f} s"  # about 3 s on the 2-core development machine


def test_auto_uses_ease_where_it_fits_and_knn_above(small) -> None:
    assert resolve_method(BlendConfig(max_items=400), 400) == ("ease", "")
    assert resolve_method(BlendConfig(max_items=399), 400) == ("knn", "")
    method, reason = resolve_method(BlendConfig(method="ease", max_items=399), 400)
    assert method is None and "blend.max_items=399" in reason
    assert item_item_matrix(small, BlendConfig(method="ease", max_items=100)) is None
    ease = item_item_matrix(small, BlendConfig(item_item_l2=50.0))
    assert ease.nnz > small.shape[1] ** 2 // 2  # dense EASE, stored as CSR
    with pytest.raises(ConfigError, match="blend.method: Input should be 'auto', 'ease' or 'knn'"):
        BlendConfig.from_dict({"method": "ann"})
    with pytest.raises(ConfigError, match="blend.neighbors: Input should be greater than or"):
        BlendConfig.from_dict({"neighbors": 0})


@pytest.mark.parametrize("method", ["knn", "ease"])
def test_blended_model_scores_are_the_formula(small, method) -> None:
    model = _model(small)
    blended = blend_model(model, BlendConfig(item_item_weight=0.3, method=method, neighbors=20))
    assert blended.blended and blended.metadata["blend"]["method_used"] == method
    users = np.arange(0, 300, 7)
    rows = (small.toarray() != 0).astype(np.float64)
    wals = model.user_factors[users] @ model.item_factors.T
    expected = 0.7 * wals + 0.3 * rows[users] @ blended.item_item.toarray()
    scores = blended.score_users(users)
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    # Pair predictions are the same formula.
    items = np.arange(users.size) * 5 % 400
    np.testing.assert_allclose(
        blended.predict(users, items), scores[np.arange(users.size), items], rtol=1e-5, atol=1e-6
    )
    # The WALS factors are kept as they are, not concatenated with anything.
    assert blended.n_factors == model.n_factors
    np.testing.assert_array_equal(blended.user_factors, model.user_factors)


def test_unblended_model_scores_exactly_as_before(small) -> None:
    model = _model(small)
    users = np.arange(50)
    np.testing.assert_array_equal(model.score_users(users), score_rows(model, users))
    assert blend_model(model, BlendConfig()) is model


def test_save_load_round_trip_and_version_1_folders(small, tmp_path: Path) -> None:
    blended = blend_model(_model(small), BlendConfig(item_item_weight=0.4, method="knn"))
    blended.save(tmp_path / "v2")
    meta = json.loads((tmp_path / "v2" / "metadata.json").read_text())
    assert meta["format_version"] == 3 and meta["blend_weight"] == pytest.approx(0.4)
    assert not list((tmp_path / "v2").glob("*.pkl"))
    loaded = RecommenderModel.load(tmp_path / "v2")
    assert (loaded.item_item != blended.item_item).nnz == 0
    users = np.arange(300)
    np.testing.assert_array_equal(loaded.score_users(users), blended.score_users(users))

    # A version-1 folder (written before the item-item files existed) still loads.
    plain = _model(small)
    plain.save(tmp_path / "v1")
    meta = json.loads((tmp_path / "v1" / "metadata.json").read_text())
    meta["format_version"] = 1
    del meta["has_item_item"], meta["blend_weight"]
    (tmp_path / "v1" / "metadata.json").write_text(json.dumps(meta))
    old = RecommenderModel.load(tmp_path / "v1")
    assert not old.blended
    np.testing.assert_array_equal(old.score_users(users), plain.score_users(users))

    meta["format_version"] = 4
    (tmp_path / "v1" / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="format version 4"):
        RecommenderModel.load(tmp_path / "v1")


def test_binary_rows_ignore_values_and_explicit_zeros() -> None:
    matrix = sp.csr_matrix(np.array([[3.0, 0.0, 1.0], [0.0, 2.0, 0.0]]))
    matrix.data[1] = 0.0  # an explicit zero is not an interaction
    np.testing.assert_array_equal(binary_rows(matrix).toarray(), [[1, 0, 0], [0, 1, 0]])


def test_native_top_n_per_row_equals_the_numpy_selection(monkeypatch) -> None:
    """Ties (few distinct values) go to the earlier stored entry in both implementations."""
    from walsrec import native

    if native.kernels() is None:
        pytest.fail("the ranking kernels did not build: a C++ compiler is part of the setup")
    rng = np.random.default_rng(3)
    matrix = sp.random(400, 900, density=0.2, format="csr", random_state=rng, dtype=np.float32)
    matrix.data = np.round(matrix.data * 4).astype(np.float32) + 1
    matrix = matrix[:, rng.permutation(900)]  # unsorted storage order
    for n in (1, 7, 150):
        kept = top_n_per_row(matrix, n)
        with monkeypatch.context() as patch:
            patch.setattr(native, "kernels", lambda: None)
            expected = top_n_per_row(matrix, n)
        assert (kept != expected).nnz == 0
        np.testing.assert_array_equal(kept.indptr, expected.indptr)
        np.testing.assert_array_equal(kept.indices, expected.indices)
