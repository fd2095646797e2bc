"""top_k and recommend: exclusion, allow-list, deterministic ties, padding, chunking."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse

import walsrec.inference.topk as topk_module
from walsrec.errors import ConfigError, DataError
from walsrec.inference.topk import PAD_ITEM, recommend, top_k


def reference_top_k(scores, k, exclude=None, allowed=None):
    """Full sort per row: score descending, then item index ascending; -inf never returned."""
    n_rows, n_items = scores.shape
    items = np.full((n_rows, k), PAD_ITEM, dtype=np.int64)
    values = np.full((n_rows, k), -np.inf, dtype=np.float32)
    dense_exclude = None if exclude is None else exclude.toarray() != 0
    for row in range(n_rows):
        candidates = [
            item
            for item in range(n_items)
            if (allowed is None or allowed[item])
            and (dense_exclude is None or not dense_exclude[row, item])
            and scores[row, item] > -np.inf
        ]
        candidates.sort(key=lambda item: (-scores[row, item], item))
        chosen = candidates[:k]
        items[row, : len(chosen)] = chosen
        values[row, : len(chosen)] = scores[row, chosen]
    return items, values


def test_sorted_by_score_descending():
    scores = np.array([[0.1, 0.9, 0.5, 0.7], [4.0, 1.0, 3.0, 2.0]])
    items, values = top_k(scores, 3)
    np.testing.assert_array_equal(items, [[1, 3, 2], [0, 2, 3]])
    np.testing.assert_array_equal(values, np.array([[0.9, 0.7, 0.5], [4, 3, 2]], np.float32))
    assert items.dtype == np.int64
    assert values.dtype == np.float32


def test_excludes_seen_items_and_respects_allowed():
    scores = np.array([[6.0, 5.0, 4.0, 3.0, 2.0, 1.0], [6.0, 5.0, 4.0, 3.0, 2.0, 1.0]])
    # Row 0 has seen items 0 and 2, row 1 has seen item 1; the explicit zero at (1, 0) is not seen.
    exclude = scipy.sparse.csr_matrix(
        (np.array([1.0, 1.0, 1.0, 0.0]), (np.array([0, 0, 1, 1]), np.array([0, 2, 1, 0]))),
        shape=(2, 6),
    )
    allowed = np.array([True, True, True, False, True, True])  # item 3 may never be returned
    items, values = top_k(scores, 3, exclude=exclude, allowed=allowed)
    np.testing.assert_array_equal(items, [[1, 4, 5], [0, 2, 4]])
    np.testing.assert_array_equal(values, [[5, 2, 1], [6, 4, 2]])


def test_ties_break_to_lower_item_index():
    scores = np.array([[1.0, 3.0, 3.0, 2.0, 3.0, 3.0], [7.0, 7.0, 7.0, 7.0, 7.0, 7.0]])
    items, _ = top_k(scores, 3)
    # Row 0: four items tie at 3.0 for three slots -> the three lowest indices 1, 2, 4.
    np.testing.assert_array_equal(items, [[1, 2, 4], [0, 1, 2]])
    # Permuted columns: the row becomes [3, 2, 1, 3, 3, 3]; the 3.0s come out in column order.
    permuted_items, _ = top_k(scores[:, [5, 3, 0, 4, 1, 2]], 6)
    np.testing.assert_array_equal(permuted_items[0], [0, 3, 4, 5, 1, 2])


def test_pads_rows_with_fewer_candidates():
    scores = np.array([[1.0, 2.0, 3.0], [1.0, -np.inf, 2.0]])
    exclude = scipy.sparse.csr_matrix(np.array([[1, 1, 0], [0, 0, 0]]))
    items, values = top_k(scores, 5, exclude=exclude)
    # Row 0: only item 2 left; row 1: item 1 scored -inf is never returned; k > n_items pads too.
    np.testing.assert_array_equal(items, [[2, -1, -1, -1, -1], [2, 0, -1, -1, -1]])
    np.testing.assert_array_equal(
        values, [[3, -np.inf, -np.inf, -np.inf, -np.inf], [2, 1, -np.inf, -np.inf, -np.inf]]
    )


def test_does_not_modify_scores_and_ranks_in_input_precision():
    scores = np.array([[1.0 + 1e-12, 1.0, 0.5]])  # equal once rounded to float32
    original = scores.copy()
    items, _ = top_k(scores, 2, exclude=scipy.sparse.csr_matrix(np.array([[0, 0, 1]])))
    np.testing.assert_array_equal(items, [[0, 1]])
    np.testing.assert_array_equal(scores, original)


@pytest.mark.parametrize("bad_k", [0, -3, 2.5, True, None])
def test_invalid_k_is_config_error(bad_k):
    with pytest.raises(ConfigError, match="k must be an integer >= 1"):
        top_k(np.zeros((2, 3)), bad_k)


def test_invalid_inputs_are_data_errors():
    with pytest.raises(DataError, match="2-D"):
        top_k(np.zeros(3), 1)
    with pytest.raises(DataError, match="exclude has shape"):
        top_k(np.zeros((2, 3)), 1, exclude=scipy.sparse.csr_matrix((2, 4)))
    with pytest.raises(DataError, match="boolean mask"):
        top_k(np.zeros((2, 3)), 1, allowed=np.array([1, 0, 1]))
    with pytest.raises(DataError, match="NaN in row 1"):
        top_k(np.array([[1.0, 2.0], [np.nan, 1.0]]), 1)


def test_nan_of_an_excluded_item_is_ignored():
    scores = np.array([[np.nan, 1.0, 2.0]])
    items, _ = top_k(scores, 2, exclude=scipy.sparse.csr_matrix(np.array([[1, 0, 0]])))
    np.testing.assert_array_equal(items, [[2, 1]])


@pytest.mark.parametrize("block_elements", [7, 64, 1 << 22])
def test_matches_full_sort_reference_with_many_ties(monkeypatch, block_elements):
    # Small integer scores make ties at the k-th place common; tiny blocks exercise the loop.
    monkeypatch.setattr(topk_module, "_BLOCK_ELEMENTS", block_elements)
    rng = np.random.default_rng(0)
    scores = rng.integers(0, 4, size=(40, 25)).astype(np.float32)
    scores[rng.random(scores.shape) < 0.05] = -np.inf
    exclude = scipy.sparse.random(40, 25, density=0.3, format="csr", random_state=1)
    allowed = rng.random(25) < 0.8
    for k in (1, 3, 10, 25, 30):
        items, values = top_k(scores, k, exclude=exclude, allowed=allowed)
        expected_items, expected_values = reference_top_k(scores, k, exclude, allowed)
        np.testing.assert_array_equal(items, expected_items)
        np.testing.assert_array_equal(values, expected_values)


def test_recommend_in_chunks_equals_one_shot_top_k():
    rng = np.random.default_rng(1)
    n_users, n_items = 53, 30
    all_scores = rng.integers(0, 5, size=(n_users, n_items)).astype(np.float32)
    seen = scipy.sparse.random(n_users, n_items, density=0.2, format="csr", random_state=2)
    allowed = rng.random(n_items) < 0.9
    users = rng.permutation(n_users)[:40]
    calls = []

    def score_fn(user_indices):
        calls.append(len(user_indices))
        return all_scores[user_indices]

    items, values = recommend(score_fn, users, 7, exclude=seen, allowed=allowed, chunk_size=6)
    expected_items, expected_values = top_k(all_scores[users], 7, seen[users], allowed)
    np.testing.assert_array_equal(items, expected_items)
    np.testing.assert_array_equal(values, expected_values)
    assert calls == [6] * 6 + [4]


def test_recommend_handles_no_users_and_checks_arguments():
    def score_fn(user_indices):
        return np.zeros((len(user_indices), 4))

    items, values = recommend(score_fn, np.array([], dtype=np.int64), 3)
    assert items.shape == (0, 3) and values.shape == (0, 3)
    with pytest.raises(ConfigError, match="chunk_size"):
        recommend(score_fn, np.arange(3), 3, chunk_size=0)
    with pytest.raises(DataError, match="outside the exclude matrix"):
        recommend(score_fn, np.array([0, 5]), 3, exclude=scipy.sparse.csr_matrix((3, 4)))
    with pytest.raises(DataError, match="score_fn returned shape"):
        recommend(lambda users: np.zeros((1, 4)), np.arange(3), 3)
    with pytest.raises(DataError, match="1-D integer"):
        recommend(score_fn, np.array([0.5]), 3)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_native_kernel_and_numpy_select_the_same_items(monkeypatch, dtype):
    """The native kernel (walsrec/native/kernels.cc) and the NumPy fallback agree exactly,
    ties, -inf, exclusion, allow-list and k beyond the candidates included."""
    from walsrec import native

    if native.kernels() is None:
        pytest.fail("the ranking kernels did not build: a C++ compiler is part of the setup")
    rng = np.random.default_rng(7)
    # Few distinct values: many ties at the k-th place.
    scores = rng.integers(0, 6, size=(300, 700)).astype(dtype)
    scores[rng.random(scores.shape) < 0.05] = -np.inf
    scores[:3] = -np.inf  # rows with no candidate at all
    exclude = scipy.sparse.random(300, 700, density=0.2, format="csr", random_state=rng)
    exclude.data[::7] = 0.0  # explicit zeros are not exclusions
    exclude = exclude[:, rng.permutation(700)]  # unsorted indices
    allowed = rng.random(700) < 0.9
    cases = [(k, e, a) for k in (1, 10, 650, 900) for e in (None, exclude) for a in (None, allowed)]
    for k, excluded, allow in cases:
        native_result = top_k(scores, k, excluded, allow)
        with monkeypatch.context() as patch:
            patch.setattr(native, "kernels", lambda: None)
            numpy_result = top_k(scores, k, excluded, allow)
        np.testing.assert_array_equal(native_result[0], numpy_result[0])
        np.testing.assert_array_equal(native_result[1], numpy_result[1])
    expected = reference_top_k(scores[:40], 10, exclude[:40], allowed)
    np.testing.assert_array_equal(top_k(scores[:40], 10, exclude[:40], allowed)[0], expected[0])


def test_native_kernel_finds_a_nan_in_a_skipped_stretch():
    """The kernel passes over blocks of scores below its threshold; a NaN there is still an
    error (unless excluded), in both precisions."""
    from walsrec import native

    if native.kernels() is None:
        pytest.fail("the ranking kernels did not build: a C++ compiler is part of the setup")
    for dtype in (np.float32, np.float64):
        scores = np.tile(np.linspace(1.0, 0.0, 1000, dtype=dtype), (3, 1))
        scores[2, 900] = np.nan  # long after the heap is full: every block there is below it
        with pytest.raises(DataError, match="NaN in row 2"):
            top_k(scores, 5)
        exclude = scipy.sparse.csr_matrix(([1.0], ([2], [900])), shape=scores.shape)
        items, _ = top_k(scores, 5, exclude=exclude)
        np.testing.assert_array_equal(items, np.tile(np.arange(5), (3, 1)))


def test_recommend_over_threads_equals_one_thread():
    rng = np.random.default_rng(3)
    all_scores = rng.standard_normal((500, 90)).astype(np.float32)
    all_scores[rng.random(all_scores.shape) < 0.1] = 0.5  # ties
    seen = scipy.sparse.random(500, 90, density=0.2, format="csr", random_state=4)
    users = rng.permutation(500)[:450]

    def score_fn(user_indices):
        return all_scores[user_indices]

    one = recommend(score_fn, users, 6, exclude=seen, chunk_size=7, threads=1)
    two = recommend(score_fn, users, 6, exclude=seen, chunk_size=7, threads=2)
    np.testing.assert_array_equal(one[0], two[0])
    np.testing.assert_array_equal(one[1], two[1])

    def failing(user_indices):
        if 100 in user_indices:
            raise DataError("model broke on user 100")
        return all_scores[user_indices]

    with pytest.raises(DataError, match="user 100"):
        recommend(failing, np.arange(500), 6, chunk_size=7, threads=2)


@pytest.mark.parametrize("native_kernels", [True, False])
def test_recommend_same_scores_equals_recommend_over_the_broadcast_row(monkeypatch, native_kernels):
    """Popularity's path (one ranking of the items for every user) returns what `recommend`
    returns for the same row broadcast to every user: ties to the lower index, seen and
    disallowed items skipped, -inf never returned, padding when candidates run out."""
    from walsrec import native
    from walsrec.inference.topk import recommend_same_scores

    if not native_kernels:
        monkeypatch.setattr(native, "kernels", lambda: None)
    elif native.kernels() is None:
        pytest.skip("no C++ compiler: the native kernels are unavailable")
    rng = np.random.default_rng(5)
    for n_users, n_items, density in [(300, 40, 0.3), (50, 6, 0.9), (80, 200, 0.02)]:
        row = rng.integers(0, 5, n_items).astype(np.float32)  # many ties
        row[rng.integers(0, n_items, 2)] = -np.inf
        seen = scipy.sparse.random(
            n_users, n_items, density=density, format="csr", random_state=n_users
        )
        users = rng.integers(0, n_users, 120)
        allowed = rng.random(n_items) > 0.25
        for options in ({}, {"exclude": seen}, {"exclude": seen, "allowed": allowed}):
            for k in (1, 5, n_items + 2):
                expected = recommend(
                    lambda chunk, row=row: np.broadcast_to(row, (len(chunk), row.size)),
                    users,
                    k,
                    chunk_size=16,
                    **options,
                )
                got = recommend_same_scores(row, users, k, **options)
                np.testing.assert_array_equal(got[0], expected[0])
                np.testing.assert_array_equal(got[1], expected[1])


def test_recommend_same_scores_checks_its_arguments():
    from walsrec.inference.topk import recommend_same_scores

    seen = scipy.sparse.csr_matrix(np.eye(3))
    with pytest.raises(DataError, match="outside the exclude matrix"):
        recommend_same_scores(np.ones(3), np.array([5]), 2, exclude=seen)
    with pytest.raises(DataError, match="NaN"):
        recommend_same_scores(np.array([1.0, np.nan, 0.0]), np.array([0]), 2, exclude=seen)
    with pytest.raises(ConfigError):
        recommend_same_scores(np.ones(3), np.array([0]), 0)
