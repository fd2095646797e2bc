"""Offline evaluation: ranking metrics at k (binary relevance) and rating-error metrics.

Definitions follow Microsoft Recommenders' conventions and are written out in docs/metrics.md.
For a user u with relevant (test) item set R_u, top-k list L_u (padding -1 never matches) and
hits at 1-based positions p in L_u:

- precision@k = |hits| / k (always divided by k, even when L_u is shorter than k);
- recall@k = |hits| / |R_u|;
- ndcg@k = DCG / IDCG, DCG = sum over hit positions p of 1 / log2(p + 1), IDCG = the DCG of
  min(|R_u|, k) hits at positions 1, 2, ...;
- map@k = (1 / min(|R_u|, k)) * sum over hit positions p of (hits among the first p) / p;
- hit_rate@k = 1 if there is at least one hit, else 0;

each averaged over the users with |R_u| >= 1 only, and coverage@k = number of distinct items in
those users' top-k lists / number of items in the catalogue.

Everything is vectorized and processed in blocks of users, so memory stays bounded at
MovieLens-20M scale.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse

from walsrec.errors import DataError
from walsrec.inference.topk import _check_k, chunk_size_for, recommend

__all__ = ["RANKING_METRICS", "evaluate", "rating_metrics", "ranking_metrics"]

RANKING_METRICS = ("precision", "recall", "ndcg", "map", "hit_rate", "coverage")
"""Names of the ranking metrics; `ranking_metrics` returns each as f"{name}@{k}"."""

# Recommendation-list entries handled per block in ranking_metrics: bounds the int64 temporaries
# (keys, search positions) to a few MiB each.
_BLOCK_ENTRIES = 1 << 20


def ranking_metrics(
    recommended: np.ndarray, relevant: scipy.sparse.csr_matrix, k: int
) -> dict[str, float]:
    """Ranking quality of top-k lists against held-out relevant items (binary relevance).

    For a user u with relevant items R_u and the first k entries L_u of their list, a hit is an
    entry of L_u that is in R_u (the padding item -1 is never a hit). With hits at 1-based
    positions p:

    - precision@k = |hits| / k (divided by k even if fewer than k real items were recommended);
    - recall@k = |hits| / |R_u|;
    - ndcg@k = DCG / IDCG with DCG = sum over hit positions p of 1 / log2(p + 1) and IDCG = the
      same sum for min(|R_u|, k) hits at positions 1..min(|R_u|, k);
    - map@k = (1 / min(|R_u|, k)) * sum over hit positions p of precision@p, where
      precision@p = (hits among the first p entries) / p;
    - hit_rate@k = 1 if u has at least one hit, else 0.

    Each is averaged over the users with |R_u| >= 1; users without relevant items are ignored
    entirely. coverage@k = (number of distinct items in the top-k lists of those users) /
    (number of items, `relevant.shape[1]`).

    Args:
        recommended: Integer `[n_users, >= k]` item indices, best first, -1 for padding. Row i
            belongs to the user of row i of `relevant`. Only the first k columns are used; an
            item must not repeat within them.
        relevant: Sparse `[n_users, n_items]`; every stored nonzero entry marks a relevant item
            (values are ignored, explicit zeros are not relevant, duplicates count once).
        k: Cut-off, at least 1.

    Returns:
        `{"precision@k", "recall@k", "ndcg@k", "map@k", "hit_rate@k", "coverage@k"}` as floats,
        with the actual k in each key (e.g. "ndcg@10"), and "n_users_evaluated" (an int).

    Raises:
        ConfigError: If `k` is not an integer >= 1.
        DataError: If shapes or dtypes do not fit, an item index is outside [-1, n_items), an item
            repeats within a top-k list, or no user has a relevant item.
    """
    k = _check_k(k)
    relevant = _binary_relevance(relevant, "relevant")
    n_users, n_items = relevant.shape
    recommended = np.asarray(recommended)
    if recommended.ndim != 2 or not np.issubdtype(recommended.dtype, np.integer):
        raise DataError(
            f"ranking_metrics: recommended must be a 2-D integer array, got shape "
            f"{recommended.shape} and dtype {recommended.dtype}"
        )
    if recommended.shape[0] != n_users or recommended.shape[1] < k:
        raise DataError(
            f"ranking_metrics: recommended has shape {recommended.shape}; expected {n_users} rows "
            f"(one per row of relevant) and at least k={k} columns"
        )

    n_relevant = np.diff(relevant.indptr)
    n_evaluated = int(np.count_nonzero(n_relevant))
    if n_evaluated == 0:
        raise DataError("ranking_metrics: no user has a relevant item, so nothing can be evaluated")

    # Relevant (user, item) pairs as sorted scalar keys: a whole block's hits are then found with
    # one searchsorted instead of a per-user set lookup. Canonical CSR is already in key order.
    relevant_keys = (
        np.repeat(np.arange(n_users, dtype=np.int64), n_relevant) * n_items + relevant.indices
    )
    position = np.arange(1, k + 1, dtype=np.float64)
    discount = 1.0 / np.log2(position + 1.0)
    ideal_dcg = np.cumsum(discount)  # ideal_dcg[n - 1] = IDCG with n hits at the top

    totals = dict.fromkeys(("precision", "recall", "ndcg", "map", "hit_rate"), 0.0)
    covered = np.zeros(n_items, dtype=bool)
    block_rows = max(1, _BLOCK_ENTRIES // k)
    for start in range(0, n_users, block_rows):
        stop = min(start + block_rows, n_users)
        block_relevant = n_relevant[start:stop]
        evaluated = block_relevant > 0
        lists = recommended[start:stop, :k][evaluated].astype(np.int64, copy=False)
        if lists.shape[0] == 0:
            continue
        block_relevant = block_relevant[evaluated].astype(np.float64)
        users = np.arange(start, stop, dtype=np.int64)[evaluated]
        _check_lists(lists, n_items, first_row=start)

        is_item = lists >= 0
        keys = users[:, None] * n_items + lists
        found_at = np.minimum(np.searchsorted(relevant_keys, keys), relevant_keys.size - 1)
        hits = is_item & (relevant_keys[found_at] == keys)

        n_hits = np.count_nonzero(hits, axis=1).astype(np.float64)
        n_ideal_hits = np.minimum(block_relevant, k).astype(np.int64)
        dcg = hits @ discount
        precision_at_position = np.cumsum(hits, axis=1) / position
        totals["precision"] += np.sum(n_hits / k)
        totals["recall"] += np.sum(n_hits / block_relevant)
        totals["ndcg"] += np.sum(dcg / ideal_dcg[n_ideal_hits - 1])
        totals["map"] += np.sum(np.sum(precision_at_position * hits, axis=1) / n_ideal_hits)
        totals["hit_rate"] += np.count_nonzero(n_hits)
        covered[lists[is_item]] = True

    result = {f"{name}@{k}": float(total / n_evaluated) for name, total in totals.items()}
    result[f"coverage@{k}"] = float(np.count_nonzero(covered) / n_items)
    result["n_users_evaluated"] = n_evaluated
    return result


def rating_metrics(predicted: np.ndarray, actual: np.ndarray) -> dict[str, float]:
    """Rating-prediction error.

    With errors e_i = predicted_i - actual_i over the n pairs: rmse = sqrt(sum(e_i^2) / n) and
    mae = sum(|e_i|) / n, computed in float64.

    Args:
        predicted: Predicted ratings, any shape.
        actual: True ratings, same shape as `predicted`.

    Returns:
        `{"rmse": ..., "mae": ...}`.

    Raises:
        DataError: If the shapes differ, there are no pairs, or a value is NaN or infinite.
    """
    squared_error, absolute_error, n_pairs = _error_sums(predicted, actual, "rating_metrics")
    if n_pairs == 0:
        raise DataError("rating_metrics: no (prediction, rating) pairs to evaluate")
    return {
        "rmse": float(np.sqrt(squared_error / n_pairs)),
        "mae": float(absolute_error / n_pairs),
    }


def evaluate(
    score_fn: Callable[[np.ndarray], np.ndarray],
    train: scipy.sparse.csr_matrix,
    test: scipy.sparse.csr_matrix,
    k: int = 10,
    *,
    predict_fn: Callable[[np.ndarray, np.ndarray], np.ndarray] | None = None,
    chunk_size: int | None = None,
    recommend_fn: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None,
) -> dict[str, float]:
    """Evaluates a model on a train/test split: ranking metrics and optionally rating error.

    Every user with at least one test item gets a top-k list from `score_fn` in which the items
    they have in `train` are excluded; the lists are scored against their test items with
    `ranking_metrics` (see its definitions). A test item the user also has in train can therefore
    never be hit; splits are expected to be disjoint.

    When `predict_fn` is given, it predicts the value of every test (user, item) pair, and rmse
    and mae are computed against the test values as in `rating_metrics`.

    Test entries are the stored nonzero entries of `test` (explicit zeros are ignored).

    Args:
        score_fn: `score_fn(user_indices)` returns dense scores `[len(user_indices), n_items]`.
        train: Sparse `[n_users, n_items]` training interactions (stored nonzero = seen).
        test: Sparse `[n_users, n_items]` held-out interactions; values are ratings for rmse/mae.
            A (user, item) pair must not be stored twice.
        k: Cut-off for the ranking metrics, at least 1.
        predict_fn: Optional `predict_fn(users, items)` returning one prediction per pair, for
            int64 arrays of equal length. Called once per chunk of `chunk_size` test users.
        chunk_size: Users per `score_fn` / `predict_fn` call; None: `chunk_size_for` the
            catalogue (about 2^23 scores per call).
        recommend_fn: Optional `recommend_fn(users, k, exclude)` returning what
            `walsrec.inference.topk.recommend(score_fn, users, k, exclude=exclude)` would (items
            first),
            faster: `PopularityModel.recommend` ranks the items once for every user.

    Returns:
        The `ranking_metrics` result ("precision@k", ..., "coverage@k", "n_users_evaluated"),
        plus "rmse" and "mae" when `predict_fn` is given.

    Raises:
        ConfigError: If `k` or `chunk_size` is invalid.
        DataError: If the shapes differ, no user has a test item, `test` stores a pair twice, or
            a model output has the wrong shape or is not finite.
    """
    k = _check_k(k)
    if not scipy.sparse.issparse(train) or not scipy.sparse.issparse(test):
        raise DataError("evaluate: train and test must be scipy.sparse matrices")
    if train.shape != test.shape:
        raise DataError(
            f"evaluate: train has shape {train.shape} but test has shape {test.shape}; both must "
            f"be [n_users, n_items] over the same user and item indices"
        )
    test = _rating_entries(test)
    users = np.flatnonzero(np.diff(test.indptr)).astype(np.int64)
    if users.size == 0:
        raise DataError("evaluate: the test matrix has no entries, so nothing can be evaluated")

    if chunk_size is None:
        chunk_size = chunk_size_for(train.shape[1])
    if recommend_fn is not None:
        recommended, _ = recommend_fn(users, k, train)
    else:
        recommended, _ = recommend(score_fn, users, k, exclude=train, chunk_size=chunk_size)
    result = ranking_metrics(recommended, test[users], k)

    if predict_fn is not None:
        squared_error = absolute_error = 0.0
        for start in range(0, users.size, chunk_size):
            chunk = test[users[start : start + chunk_size]]
            pair_users = np.repeat(users[start : start + chunk_size], np.diff(chunk.indptr))
            pair_items = chunk.indices.astype(np.int64)
            predicted = np.asarray(predict_fn(pair_users, pair_items))
            if predicted.size != pair_users.size:
                raise DataError(
                    f"evaluate: predict_fn returned {predicted.size} predictions for "
                    f"{pair_users.size} (user, item) pairs"
                )
            chunk_squared, chunk_absolute, _ = _error_sums(
                predicted.reshape(-1), chunk.data, "evaluate"
            )
            squared_error += chunk_squared
            absolute_error += chunk_absolute
        result["rmse"] = float(np.sqrt(squared_error / test.nnz))
        result["mae"] = float(absolute_error / test.nnz)
    return result


def sample_users(
    held_out: scipy.sparse.spmatrix, max_users: int | None, seed: int = 0
) -> scipy.sparse.csr_matrix:
    """`held_out` with the entries of at most `max_users` of its users kept: a uniform sample
    without replacement, the same for the same matrix, `max_users` and `seed`; the other users'
    rows are emptied (the shape is unchanged, so `evaluate` takes it as it is). With `max_users`
    None, or at least the number of users with entries, `held_out` itself (as CSR).

    Ranking every user costs users x items scores: at 10^7 users a full evaluation is hours of
    matrix products, a sample of 10^5 users minutes or less, with metrics within about
    1/sqrt(sample) of the full ones.

    Raises:
        ConfigError: If `max_users` is not None or an integer >= 1.
    """
    from walsrec.errors import ConfigError

    held_out = scipy.sparse.csr_matrix(held_out)
    if max_users is None:
        return held_out
    if isinstance(max_users, bool) or not isinstance(max_users, int | np.integer) or max_users < 1:
        raise ConfigError(f"max_users must be null or an integer >= 1, got {max_users!r}")
    counts = np.diff(held_out.indptr)
    users = np.flatnonzero(counts)
    if users.size <= max_users:
        return held_out
    keep = np.zeros(held_out.shape[0], dtype=bool)
    keep[np.random.default_rng(seed).choice(users, int(max_users), replace=False)] = True
    entries = np.repeat(keep, counts)
    indptr = np.zeros(held_out.shape[0] + 1, dtype=held_out.indptr.dtype)
    np.cumsum(np.where(keep, counts, 0), out=indptr[1:])
    return scipy.sparse.csr_matrix(
        (held_out.data[entries], held_out.indices[entries], indptr), shape=held_out.shape
    )


def _error_sums(predicted: np.ndarray, actual: np.ndarray, caller: str) -> tuple[float, float, int]:
    """Sum of squared and of absolute errors, and the number of pairs, after validation."""
    predicted = np.asarray(predicted, dtype=np.float64)
    actual = np.asarray(actual, dtype=np.float64)
    if predicted.shape != actual.shape:
        raise DataError(
            f"{caller}: predicted has shape {predicted.shape} but actual has shape {actual.shape}"
        )
    for name, values in (("predictions", predicted), ("actual ratings", actual)):
        not_finite = ~np.isfinite(values)
        if not_finite.any():
            raise DataError(
                f"{caller}: {np.count_nonzero(not_finite)} of the {values.size} {name} are NaN or "
                f"infinite (first at flat index {np.flatnonzero(not_finite)[0]})"
            )
    error = predicted - actual
    return float(np.sum(error * error)), float(np.sum(np.abs(error))), int(error.size)


def _check_lists(lists: np.ndarray, n_items: int, first_row: int) -> None:
    """Raises DataError for an out-of-range item or an item repeated within one top-k list."""
    out_of_range = (lists < -1) | (lists >= n_items)
    if out_of_range.any():
        raise DataError(
            f"ranking_metrics: recommended item {lists[out_of_range][0]} is outside [-1, "
            f"{n_items}) (block starting at row {first_row})"
        )
    ordered = np.sort(lists, axis=1)
    # A repeated item would be counted as several hits.
    repeated = (ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)
    if repeated.any():
        raise DataError(
            f"ranking_metrics: an item is recommended twice within one top-k list (item "
            f"{ordered[:, 1:][repeated][0]}, block starting at row {first_row})"
        )


def _binary_relevance(matrix: scipy.sparse.spmatrix, name: str) -> scipy.sparse.csr_matrix:
    """Canonical CSR copy (sorted, no duplicates, no explicit zeros) with all values 1."""
    if not scipy.sparse.issparse(matrix) or matrix.ndim != 2:
        raise DataError(f"{name} must be a 2-D scipy.sparse matrix, got {type(matrix).__name__}")
    pattern = scipy.sparse.csr_matrix(matrix, copy=True)
    # Zeros are dropped before values become 1, so a stored zero never turns relevant.
    pattern.eliminate_zeros()
    pattern.data = np.ones_like(pattern.data, dtype=np.int8)
    pattern.sum_duplicates()
    return pattern


def _rating_entries(test: scipy.sparse.spmatrix) -> scipy.sparse.csr_matrix:
    """Canonical CSR copy of the test ratings; a duplicated (user, item) pair is an error."""
    ratings = scipy.sparse.csr_matrix(test, dtype=np.float64, copy=True)
    ratings.eliminate_zeros()
    ratings.sort_indices()
    # Summing duplicates would silently add two ratings together, so they are refused instead.
    same_as_previous = ratings.indices[1:] == ratings.indices[:-1]
    starts_row = np.zeros(ratings.nnz, dtype=bool)
    starts_row[ratings.indptr[:-1][ratings.indptr[:-1] < ratings.nnz]] = True
    duplicated = same_as_previous & ~starts_row[1:]
    if duplicated.any():
        entry = np.flatnonzero(duplicated)[0] + 1
        user = int(np.searchsorted(ratings.indptr, entry, side="right") - 1)
        raise DataError(
            f"evaluate: test stores the pair (user {user}, item {ratings.indices[entry]}) more "
            f"than once; deduplicate the split first"
        )
    ratings.has_canonical_format = True
    return ratings
