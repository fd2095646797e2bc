"""PopularityModel: counts, scores, and its use with recommend and evaluate."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

from walsrec.errors import DataError
from walsrec.evaluation.metrics import evaluate
from walsrec.inference.topk import recommend
from walsrec.models.popularity import PopularityModel

# 3 users, 5 items; values are ratings and must not matter for the counts.
TRAIN = scipy.sparse.csr_matrix(
    np.array(
        [
            [5.0, 1.0, 0.0, 0.0, 2.0],
            [4.0, 0.0, 0.0, 3.0, 0.0],
            [1.0, 2.0, 0.0, 0.0, 0.0],
        ]
    )
)


def test_fit_counts_interactions_per_item():
    model = PopularityModel.fit(TRAIN)
    # item 0: users 0, 1, 2; item 1: users 0, 2; item 2: none; item 3: user 1; item 4: user 0
    np.testing.assert_array_equal(model.item_counts, [3.0, 2.0, 0.0, 1.0, 1.0])
    assert model.item_counts.dtype == np.float64
    assert model.n_items == 5


def test_fit_ignores_explicit_zeros_and_counts_duplicates_once():
    # (0, 1) stored twice, (1, 2) stored as an explicit zero.
    train = scipy.sparse.csr_matrix(
        (np.array([1.0, 1.0, 0.0]), np.array([1, 1, 2]), np.array([0, 2, 3])), shape=(2, 3)
    )
    np.testing.assert_array_equal(PopularityModel.fit(train).item_counts, [0.0, 1.0, 0.0])


def test_fit_on_a_canonical_matrix_counts_as_the_general_path():
    # Sorted, duplicate-free (the split's matrices): counted from the indices, no copy; a
    # stored zero still doesn't count.
    rng = np.random.default_rng(5)
    canonical = scipy.sparse.random(300, 40, density=0.2, format="csr", random_state=rng)
    canonical.data[::7] = 0.0
    assert canonical.has_canonical_format
    unsorted = canonical.copy()
    unsorted.has_sorted_indices = False  # forces the general path on the same entries
    unsorted.has_canonical_format = False
    fast, general = PopularityModel.fit(canonical), PopularityModel.fit(unsorted)
    np.testing.assert_array_equal(fast.item_counts, general.item_counts)
    expected = np.asarray((canonical != 0).sum(axis=0)).ravel()
    np.testing.assert_array_equal(fast.item_counts, expected)
    assert canonical.nnz == int((canonical.data != 0).sum()) + len(canonical.data[::7])


def test_score_users_broadcasts_the_counts():
    model = PopularityModel.fit(TRAIN)
    scores = model.score_users(np.array([2, 0, 7]))  # 7: unseen users get the same scores
    assert scores.shape == (3, 5)
    assert scores.dtype == np.float32
    np.testing.assert_array_equal(scores, np.tile([3.0, 2.0, 0.0, 1.0, 1.0], (3, 1)))
    with pytest.raises(DataError):
        model.score_users(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(DataError):
        PopularityModel.fit(TRAIN.toarray())


def test_recommends_most_popular_unseen_items():
    model = PopularityModel.fit(TRAIN)
    items, scores = recommend(model.score_users, np.arange(3), 2, exclude=TRAIN)
    # counts [3, 2, 0, 1, 1]; ties between items 3 and 4 go to item 3.
    # user 0 saw 0, 1, 4 -> [3, 2]; user 1 saw 0, 3 -> [1, 4]; user 2 saw 0, 1 -> [3, 4]
    np.testing.assert_array_equal(items, [[3, 2], [1, 4], [3, 4]])
    np.testing.assert_array_equal(scores, [[1, 0], [2, 1], [1, 1]])


def test_evaluate_popularity():
    model = PopularityModel.fit(TRAIN)
    test = scipy.sparse.csr_matrix(
        np.array([[0, 0, 0, 4.0, 0], [0, 0, 0, 0, 0], [0, 0, 3.0, 0, 0]])
    )
    result = evaluate(model.score_users, TRAIN, test, k=1)
    # top-1: user 0 -> item 3 (hit), user 2 -> item 3 (miss; relevant 2); user 1 has no test item
    assert result["n_users_evaluated"] == 2
    assert result["precision@1"] == pytest.approx(1 / 2)
    assert result["hit_rate@1"] == pytest.approx(1 / 2)
    assert result["coverage@1"] == pytest.approx(1 / 5)


def test_recommend_and_evaluate_through_it_match_the_score_row():
    """`PopularityModel.recommend` (one ranking for everyone) gives what `recommend` gives over
    `score_users`, and so does `evaluate` with it as `recommend_fn` (the evaluator's path)."""
    rng = np.random.default_rng(3)
    train = scipy.sparse.random(400, 60, density=0.1, format="csr", random_state=4)
    test = scipy.sparse.random(400, 60, density=0.05, format="csr", random_state=5)
    test = test - test.multiply(train != 0)  # disjoint, as a split is
    test.eliminate_zeros()
    model = PopularityModel.fit(train)
    users = rng.integers(0, 400, 150)
    expected = recommend(model.score_users, users, 10, exclude=train, chunk_size=32)
    got = model.recommend(users, 10, train)
    np.testing.assert_array_equal(got[0], expected[0])
    np.testing.assert_array_equal(got[1], expected[1])
    assert evaluate(model.score_users, train, test, 10, recommend_fn=model.recommend) == evaluate(
        model.score_users, train, test, 10
    )
