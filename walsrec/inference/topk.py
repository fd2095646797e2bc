"""Top-k selection over dense score rows, with seen-item exclusion and an item allow-list.

`top_k` runs the native kernel (`walsrec/native/kernels.cc`: one pass per row with a k-entry
heap, the seen items read straight from the CSR arrays, rows over threads) when it is built,
and otherwise the NumPy selection below, with the same results. In NumPy everything is
vectorized over users. `top_k` works through its rows in blocks of at most
`_BLOCK_ELEMENTS` scores, and `recommend` asks the model for scores `chunk_size` users at a
time, so memory stays bounded whatever the number of users (MovieLens-20M: 138,493 x 26,744).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse

from walsrec import native
from walsrec.errors import ConfigError, DataError

__all__ = ["PAD_ITEM", "chunk_size_for", "recommend", "recommend_same_scores", "top_k"]

PAD_ITEM = -1
"""Item index used to pad a row that has fewer than k candidates (its score is -inf)."""

# Scores processed per block inside top_k. argpartition allocates an int64 index array the size
# of its input, so a block of 2**22 scores costs ~32 MiB of indices plus a same-sized work copy,
# instead of ~440 MiB for a whole 2048 x 26,744 chunk.
_BLOCK_ELEMENTS = 1 << 22

# Scores per `recommend` chunk chosen by `chunk_size_for`: a 2^21-float (8 MiB) block is
# scored, blended and selected by one core while it is still in that core's cache, one chunk per
# core at a time. 2048-user chunks of a 15,207-item catalogue (124 MB) took twice as long per
# user as 2^23-score chunks on the 2-core development machine, and 2^23-score chunks (313 users
# of ML-20M) over two threads 1.5 times as long as 2^21 (bench/eval_speed).
_CHUNK_ELEMENTS = 1 << 21


def chunk_size_for(n_items: int) -> int:
    """Users per `recommend` chunk for a catalogue: about 2^21 scores, 64 to 2048 users."""
    return int(min(2048, max(64, _CHUNK_ELEMENTS // max(int(n_items), 1))))


def top_k(
    scores: np.ndarray,
    k: int,
    exclude: scipy.sparse.csr_matrix | None = None,
    allowed: np.ndarray | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Returns the k best-scoring candidate items of every row.

    An item is a candidate for row `u` unless it is excluded (`exclude[u, item]` is a stored
    nonzero), not allowed (`allowed[item]` is False) or scored -inf (so -inf means "never
    recommend"). Rows are ranked by score descending; equal scores are broken by the lower item
    index, so the result is deterministic. Selection uses `argpartition` and then sorts only the
    k selected items, never the whole row.

    Ranking uses the precision of `scores` (float64 scores are compared as float64); the returned
    scores are rounded to float32.

    Args:
        scores: Dense scores `[n_rows, n_items]` (any real dtype; not modified). NaN is an error.
        k: Number of items to return per row, at least 1. May exceed the number of items.
        exclude: Optional sparse matrix `[n_rows, n_items]` whose stored nonzero entries (e.g.
            items already seen in training) must not be returned. Explicit zeros are ignored.
        allowed: Optional boolean mask `[n_items]`; only items where it is True may be returned.
        threads: Threads of the native kernel; None: `native.threads_for` the block's size.

    Returns:
        `(items, item_scores)`: int64 `[n_rows, k]` item indices and float32 `[n_rows, k]` scores,
        best first. A row with fewer than k candidates is padded at the end with item
        `PAD_ITEM` (-1) and score -inf.

    Raises:
        ConfigError: If `k` is not an integer >= 1.
        DataError: If the shapes or dtypes of `scores`, `exclude` or `allowed` do not fit, or a
            candidate score is NaN.
    """
    k = _check_k(k)
    scores = np.asarray(scores)
    if scores.ndim != 2:
        raise DataError(f"top_k: scores must be 2-D [n_rows, n_items], got shape {scores.shape}")
    work_dtype = np.result_type(scores.dtype, np.float32)
    if not np.issubdtype(work_dtype, np.floating):
        raise DataError(f"top_k: scores must be real numbers, got dtype {scores.dtype}")
    n_rows, n_items = scores.shape
    if exclude is not None:
        exclude = _as_csr(exclude, "exclude")
        if exclude.shape != scores.shape:
            raise DataError(
                f"top_k: exclude has shape {exclude.shape}, expected the scores' shape "
                f"{scores.shape}"
            )
    disallowed_items = None
    if allowed is not None:
        allowed = _check_allowed(allowed, n_items)
        disallowed_items = np.flatnonzero(~allowed)

    items = np.full((n_rows, k), PAD_ITEM, dtype=np.int64)
    item_scores = np.full((n_rows, k), -np.inf, dtype=np.float32)
    if n_rows == 0 or n_items == 0:
        return items, item_scores
    library = native.kernels()
    if library is not None and n_items < np.iinfo(np.int32).max:
        return _top_k_native(
            library, scores.astype(work_dtype, copy=False), k, exclude, allowed, threads
        )

    block_rows = max(1, _BLOCK_ELEMENTS // n_items)
    for start in range(0, n_rows, block_rows):
        stop = min(start + block_rows, n_rows)
        # A private copy: masking writes -inf into it, and the caller's array stays untouched.
        work = np.array(scores[start:stop], dtype=work_dtype, copy=True)
        if disallowed_items is not None and disallowed_items.size:
            work[:, disallowed_items] = -np.inf
        if exclude is not None:
            _mask_excluded(work, exclude[start:stop])
        nan_rows = np.flatnonzero(np.isnan(work).any(axis=1))
        if nan_rows.size:
            raise DataError(
                f"top_k: the score of a candidate item is NaN in row {start + nan_rows[0]} "
                f"({nan_rows.size} row(s) in this block); the model produced invalid scores"
            )
        block_items, block_scores = _top_k_block(work, k)
        items[start:stop] = block_items
        item_scores[start:stop] = block_scores
    return items, item_scores


def recommend(
    score_fn: Callable[[np.ndarray], np.ndarray],
    users: np.ndarray,
    k: int,
    *,
    exclude: scipy.sparse.csr_matrix | None = None,
    allowed: np.ndarray | None = None,
    chunk_size: int = 2048,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Top-k recommendations for many users, scoring `chunk_size` users at a time.

    With several chunks, they are scored and selected on `threads` threads at once (one chunk
    per thread, BLAS limited to one thread meanwhile), so each chunk's scores are selected by
    the core that computed them, from its cache: on two cores about 3 times faster than one
    chunk at a time over both (bench/eval_speed). `score_fn` is then called from several
    threads at once; NumPy scoring is safe to call so.

    Same selection rules as `top_k` (exclusion, allow-list, -inf never returned, ties to the lower
    item index, -1 / -inf padding); the result equals one `top_k` call on all scores at once.

    Args:
        score_fn: `score_fn(user_indices)` returns dense scores `[len(user_indices), n_items]`.
            Called once per chunk, with an int64 array of at most `chunk_size` user indices.
        users: 1-D integer user indices, in the order wanted for the output rows.
        k: Number of items per user, at least 1.
        exclude: Optional FULL interaction matrix `[n_all_users, n_items]` indexed by user index;
            the rows of each chunk's users are picked from it, and their stored nonzero entries
            are not recommended.
        allowed: Optional boolean mask `[n_items]` of items that may be recommended.
        chunk_size: Users scored per `score_fn` call, at least 1. Peak memory is about
            `threads * chunk_size * n_items` scores from `score_fn`.
        threads: Chunks worked on at once; None: `native.usable_cores()`.

    Returns:
        `(items, item_scores)`: int64 `[len(users), k]` and float32 `[len(users), k]`, row `i`
        being the recommendations of `users[i]`.

    Raises:
        ConfigError: If `k` or `chunk_size` is not an integer >= 1.
        DataError: If `users` is not 1-D integer, a user is outside `exclude`'s rows, or
            `score_fn` returns scores of the wrong shape.
    """
    k = _check_k(k)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int | np.integer):
        raise ConfigError(f"recommend: chunk_size must be an integer >= 1, got {chunk_size!r}")
    if chunk_size < 1:
        raise ConfigError(f"recommend: chunk_size must be an integer >= 1, got {chunk_size}")
    users = np.asarray(users)
    if users.ndim != 1 or not (np.issubdtype(users.dtype, np.integer) or users.size == 0):
        raise DataError(
            f"recommend: users must be a 1-D integer array, got shape {users.shape} "
            f"and dtype {users.dtype}"
        )
    users = users.astype(np.int64, copy=False)
    if exclude is not None:
        exclude = _as_csr(exclude, "exclude")
        out_of_range = (users < 0) | (users >= exclude.shape[0])
        if out_of_range.any():
            raise DataError(
                f"recommend: user index {users[out_of_range][0]} is outside the exclude matrix, "
                f"which has {exclude.shape[0]} user rows"
            )

    items = np.full((users.size, k), PAD_ITEM, dtype=np.int64)
    item_scores = np.full((users.size, k), -np.inf, dtype=np.float32)
    starts = range(0, users.size, chunk_size)
    if threads is None:
        threads = native.usable_cores()
    threads = max(1, min(int(threads), len(starts)))

    def chunk(start: int) -> None:
        chunk_users = users[start : start + chunk_size]
        chunk_scores = np.asarray(score_fn(chunk_users))
        if chunk_scores.ndim != 2 or chunk_scores.shape[0] != chunk_users.size:
            raise DataError(
                f"recommend: score_fn returned shape {chunk_scores.shape} for "
                f"{chunk_users.size} users; expected [{chunk_users.size}, n_items]"
            )
        chunk_exclude = None
        if exclude is not None:
            if chunk_scores.shape[1] != exclude.shape[1]:
                raise DataError(
                    f"recommend: score_fn returned {chunk_scores.shape[1]} item columns but the "
                    f"exclude matrix has {exclude.shape[1]} items"
                )
            chunk_exclude = exclude[chunk_users]
        chunk_items, chunk_item_scores = top_k(
            chunk_scores, k, chunk_exclude, allowed, threads=1 if threads > 1 else None
        )
        items[start : start + chunk_users.size] = chunk_items
        item_scores[start : start + chunk_users.size] = chunk_item_scores

    if threads == 1:
        for start in starts:
            chunk(start)
        return items, item_scores
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        # In order, so the first failing chunk's error is the one raised.
        for _ in pool.map(chunk, starts):
            pass
    return items, item_scores


def recommend_same_scores(
    item_scores: np.ndarray,
    users: np.ndarray,
    k: int,
    *,
    exclude: scipy.sparse.csr_matrix | None = None,
    allowed: np.ndarray | None = None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`recommend` for a model that gives every user the same scores (popularity).

    The items are ranked once (best first, ties to the lower index) and each user's top k is
    the first k candidates of that order: no score block per user. The result equals
    `recommend(lambda u: np.broadcast_to(item_scores, (len(u), n_items)), users, k, ...)`,
    which is what runs when the native kernels are unavailable (and with a NaN score, to
    raise its error). On the ML-20M shape (138,493 users, 26,744 items) the broadcast scored
    and selected every user's full row: the evaluator's two evaluations took 10.0 s, 6.2 s
    with this for popularity's (cProfile of the pipeline, load 1.5-1.9).

    Args:
        item_scores: 1-D `[n_items]` scores, compared in float32 (as `recommend` compares what
            such a score_fn returns). NaN is an error.
        users: 1-D integer user indices, as for `recommend`.
        k: Number of items per user, at least 1.
        exclude: Optional FULL interaction matrix indexed by user index, as for `recommend`.
        allowed: Optional boolean mask `[n_items]`.
        threads: Threads of the kernel; None: `native.threads_for` the output's size.

    Returns:
        `(items, item_scores)` as `recommend` returns them.
    """
    k = _check_k(k)
    scores = np.ascontiguousarray(np.asarray(item_scores, dtype=np.float32).reshape(-1))
    n_items = scores.size
    users = np.asarray(users)
    library = native.kernels()
    if library is None or np.isnan(scores).any() or n_items >= np.iinfo(np.int32).max:
        # The general path: the same result, and its errors (a NaN score among them).
        return recommend(
            lambda chunk: np.broadcast_to(scores, (len(chunk), n_items)),
            users,
            k,
            exclude=exclude,
            allowed=allowed,
            chunk_size=chunk_size_for(n_items),
            threads=threads,
        )
    if users.ndim != 1 or not (np.issubdtype(users.dtype, np.integer) or users.size == 0):
        raise DataError(
            f"recommend: users must be a 1-D integer array, got shape {users.shape} "
            f"and dtype {users.dtype}"
        )
    users = users.astype(np.int64, copy=False)
    mask = None
    if allowed is not None:
        mask = np.ascontiguousarray(_check_allowed(allowed, n_items)).view(np.uint8)
    indptr = indices = None
    if exclude is not None:
        exclude = _as_csr(exclude, "exclude")
        if exclude.shape[1] != n_items:
            raise DataError(
                f"recommend: {n_items} item scores but the exclude matrix has "
                f"{exclude.shape[1]} items"
            )
        out_of_range = (users < 0) | (users >= exclude.shape[0])
        if out_of_range.any():
            raise DataError(
                f"recommend: user index {users[out_of_range][0]} is outside the exclude matrix, "
                f"which has {exclude.shape[0]} user rows"
            )
        rows = _sorted_nonzero(exclude[users])
        indptr = rows.indptr.astype(np.int64, copy=False)
        indices = rows.indices.astype(np.int32, copy=False)
    # Stable on the negated scores: equal scores keep the lower index first.
    order = np.argsort(-scores, kind="stable").astype(np.int64)
    items = np.empty((users.size, k), dtype=np.int64)
    best = np.empty((users.size, k), dtype=np.float32)
    library.walsrec_ranked_top_k(
        order.ctypes.data,
        scores.ctypes.data,
        n_items,
        users.size,
        k,
        None if indptr is None else indptr.ctypes.data,
        None if indices is None else indices.ctypes.data,
        None if mask is None else mask.ctypes.data,
        items.ctypes.data,
        best.ctypes.data,
        native.threads_for(users.size * k) if threads is None else threads,
    )
    return items, best


def _top_k_native(
    library: Any,
    scores: np.ndarray,
    k: int,
    exclude: scipy.sparse.csr_matrix | None,
    allowed: np.ndarray | None,
    threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """`top_k` by the native kernel: float32 or float64 scores, validated arguments."""
    n_rows, n_items = scores.shape
    scores = np.ascontiguousarray(scores)
    if scores.dtype == np.float32:
        function = library.walsrec_top_k_f32
    else:
        function = library.walsrec_top_k_f64
    indptr = indices = None
    if exclude is not None:
        exclude = _sorted_nonzero(exclude)
        indptr = exclude.indptr.astype(np.int64, copy=False)
        indices = exclude.indices.astype(np.int32, copy=False)
    mask = None if allowed is None else np.ascontiguousarray(allowed).view(np.uint8)
    items = np.empty((n_rows, k), dtype=np.int64)
    item_scores = np.empty((n_rows, k), dtype=np.float32)
    bad_row = function(
        scores.ctypes.data,
        n_rows,
        n_items,
        k,
        None if indptr is None else indptr.ctypes.data,
        None if indices is None else indices.ctypes.data,
        None if mask is None else mask.ctypes.data,
        items.ctypes.data,
        item_scores.ctypes.data,
        native.threads_for(scores.size) if threads is None else threads,
    )
    if bad_row >= 0:
        raise DataError(
            f"top_k: the score of a candidate item is NaN in row {bad_row}; the model produced "
            "invalid scores"
        )
    return items, item_scores


def _sorted_nonzero(matrix: scipy.sparse.csr_matrix) -> scipy.sparse.csr_matrix:
    """The matrix with sorted indices and without explicit zeros (a copy only if needed)."""
    if matrix.nnz and not (matrix.data != 0).all():
        matrix = matrix.copy()
        matrix.eliminate_zeros()
    if not matrix.has_sorted_indices:
        matrix = matrix.sorted_indices()
    return matrix


def _top_k_block(work: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-k of one block whose non-candidates are already -inf (no NaN)."""
    n_rows, n_items = work.shape
    n_selected = min(k, n_items)
    # The n_selected largest end up in the last n_selected columns; partitioning `work` itself
    # rather than `-work` avoids another block-sized copy.
    selected = np.argpartition(work, n_items - n_selected, axis=1)[:, n_items - n_selected :]
    selected_scores = np.take_along_axis(work, selected, axis=1)
    threshold = selected_scores.min(axis=1)

    # argpartition picks arbitrarily among items tied with the k-th best score. A row is
    # ambiguous only when more items reach the threshold than were selected; re-select those rows
    # so that the tied items with the lowest indices win. Rows whose threshold is -inf need no fix:
    # their -inf items all become padding.
    n_at_least_threshold = np.count_nonzero(work >= threshold[:, None], axis=1)
    ambiguous = np.flatnonzero((n_at_least_threshold > n_selected) & (threshold > -np.inf))
    if ambiguous.size:
        selected[ambiguous] = _select_ties_by_index(
            work[ambiguous], threshold[ambiguous], n_selected
        )

    # Order the selection by index first, so a stable sort on score leaves ties index-ascending.
    selected.sort(axis=1)
    selected_scores = np.take_along_axis(work, selected, axis=1)
    order = np.argsort(-selected_scores, axis=1, kind="stable")
    block_items = np.take_along_axis(selected, order, axis=1).astype(np.int64, copy=False)
    block_scores = np.take_along_axis(selected_scores, order, axis=1)
    padding = np.isneginf(block_scores)
    block_items[padding] = PAD_ITEM

    if n_selected < k:
        pad_width = ((0, 0), (0, k - n_selected))
        block_items = np.pad(block_items, pad_width, constant_values=PAD_ITEM)
        block_scores = np.pad(block_scores, pad_width, constant_values=-np.inf)
    return block_items, block_scores.astype(np.float32)


def _select_ties_by_index(rows: np.ndarray, threshold: np.ndarray, n_selected: int) -> np.ndarray:
    """All items above the threshold plus the lowest-index items equal to it, n_selected in all."""
    n_items = rows.shape[1]
    key_dtype = np.int32 if n_items < np.iinfo(np.int32).max else np.int64
    # Key -1 for items above the threshold (fewer than n_selected of them, so all are kept), the
    # item index for tied items (lower index = smaller key), and n_items for everything else.
    column = np.arange(n_items, dtype=key_dtype)
    key = np.where(rows == threshold[:, None], column, key_dtype(n_items))
    key[rows > threshold[:, None]] = -1
    return np.argpartition(key, n_selected - 1, axis=1)[:, :n_selected]


def _mask_excluded(work: np.ndarray, exclude_rows: scipy.sparse.csr_matrix) -> None:
    """Sets the scores of the stored nonzero entries of `exclude_rows` to -inf, in place."""
    row_of_entry = np.repeat(np.arange(exclude_rows.shape[0]), np.diff(exclude_rows.indptr))
    nonzero = exclude_rows.data != 0
    work[row_of_entry[nonzero], exclude_rows.indices[nonzero]] = -np.inf


def _check_k(k: int) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise ConfigError(f"k must be an integer >= 1 (the number of items per user), got {k!r}")
    return int(k)


def _check_allowed(allowed: np.ndarray, n_items: int) -> np.ndarray:
    allowed = np.asarray(allowed)
    if allowed.dtype != np.bool_ or allowed.shape != (n_items,):
        raise DataError(
            f"allowed must be a boolean mask of shape ({n_items},), got dtype {allowed.dtype} "
            f"and shape {allowed.shape}"
        )
    return allowed


def _as_csr(matrix: scipy.sparse.spmatrix, name: str) -> scipy.sparse.csr_matrix:
    if not scipy.sparse.issparse(matrix):
        raise DataError(f"{name} must be a scipy.sparse matrix, got {type(matrix).__name__}")
    return matrix.tocsr()
