"""Item-item models to blend with WALS: a sparse neighbourhood model, and EASE where it fits.

Both give a matrix S [n_items, n_items] with a zero diagonal; a user's item-item score of item
i is sum over their training items j of S[j, i] (`binary_rows @ S`).

- `knn_item_weights`: for every item i, its `neighbors` most similar items j by the shrunk
  cosine of their co-occurrence, g_ji / (sqrt(n_j n_i) + shrinkage), with g = X^T X on the
  binary matrix X and n the item counts. X^T X is computed a block of items at a time, each
  block sized so its product has at most `block_entries` entries, and only the N largest of
  each column are kept: memory is O(n_items * N + block_entries) whatever the catalogue, time
  is that of the co-occurrence product (sum over users of |I_u| * |I_u|). Users with more than
  `max_user_items` items enter it with an even sample of them, so one heavy user cannot make
  the product quadratic in the catalogue.
- `ease_item_weights`: EASE (Steck, 2019), the closed-form ridge regression of X on itself with
  a zero diagonal, B = I - P / diag(P), P = (X^T X + l2 I)^-1. It needs the dense n_items^2
  inverse, so it is only for catalogues of a few thousand items (MovieLens-100K and -1M),
  where it is the better of the two.
- `item_item_matrix`: the one `BlendConfig`-driven entry point (method auto/ease/knn), returning
  the CSR matrix, or None and the one reason it was left out.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from walsrec import native
from walsrec.errors import ConfigError, DataError

__all__ = ["ease_item_weights", "knn_item_weights", "top_n_per_row"]

# Entries of one block of the co-occurrence product (int64 indices + float data: ~16 bytes each).
DEFAULT_BLOCK_ENTRIES = 20_000_000
# Rows of one block: bounds the per-row histograms of `_prefilter` (rows x 256 counts).
MAX_BLOCK_ROWS = 8192


def _binary(matrix: sp.spmatrix, caller: str) -> sp.csr_matrix:
    if not sp.issparse(matrix) or len(matrix.shape) != 2:
        raise DataError(f"{caller}: the training matrix must be a 2-D scipy.sparse matrix")
    binary = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    binary.eliminate_zeros()
    binary.sum_duplicates()
    binary.data[:] = 1.0
    return binary


def ease_item_weights(matrix: sp.spmatrix, l2: float, *, max_items: int = 5000) -> np.ndarray:
    """The EASE item-item weights of a users x items interaction matrix.

    Args:
        matrix: users x items; every stored non-zero entry counts as one interaction (values
            are ignored).
        l2: the ridge penalty (> 0); larger values shrink the weights towards popularity-free
            co-occurrence.
        max_items: refuse larger catalogues (the dense inverse needs n_items^2 numbers).

    Returns:
        float32 [n_items, n_items] with a zero diagonal; scores are `binary_rows @ weights`.

    Raises:
        ConfigError: l2 <= 0, or the catalogue is larger than `max_items`.
        DataError: the matrix is not a 2-D sparse matrix.
    """
    binary = _binary(matrix, "EASE item-item model")
    if not l2 > 0:
        raise ConfigError(f"blend.item_item_l2 must be > 0, got {l2!r}")
    n_items = matrix.shape[1]
    if n_items > max_items:
        raise ConfigError(
            f"blend: EASE needs a dense {n_items} x {n_items} matrix, more than "
            f"blend.max_items={max_items}; use blend.method: knn (or auto) for this catalogue"
        )
    binary = binary.astype(np.float64)
    gram = (binary.T @ binary).toarray()
    gram[np.diag_indices_from(gram)] += float(l2)
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)[np.newaxis, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32)


def top_n_per_row(matrix: sp.spmatrix, n: int) -> sp.csr_matrix:
    """The `n` largest stored entries of every row, as float32 CSR with sorted indices.

    Vectorized over all rows at once: one stable sort of the stored entries by (row, value
    descending), ties kept in storage order, so the result is deterministic. A single float
    key is sorted (radix-like stable sort) rather than two keys with `lexsort`, which was six
    times slower on the 10^7-entry blocks of a 20,000-item catalogue.
    """
    rows = sp.csr_matrix(matrix, dtype=np.float32)
    lengths = np.diff(rows.indptr)
    if lengths.size == 0 or lengths.max(initial=0) <= n:
        rows.sort_indices()
        return rows
    library = native.kernels()
    if library is not None:
        # One pass per row with an n-entry heap (walsrec/native/kernels.cc), same rule.
        indptr = rows.indptr.astype(np.int64, copy=False)
        data = np.ascontiguousarray(rows.data)
        keep = np.empty(rows.nnz, dtype=np.uint8)
        library.walsrec_top_n_csr(
            indptr.ctypes.data,
            data.ctypes.data,
            rows.shape[0],
            n,
            keep.ctypes.data,
            native.threads_for(rows.nnz),
        )
        kept = keep.view(bool)
        indptr = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])[indptr]
        result = sp.csr_matrix((data[kept], rows.indices[kept], indptr), shape=rows.shape)
        result.sort_indices()
        return result
    values = rows.data.astype(np.float64)
    low, high = values.min(), values.max()
    scaled = (values - low) / (high - low) if high > low else np.zeros_like(values)
    rows, scaled = _prefilter(rows, scaled, lengths, n)
    lengths = np.diff(rows.indptr)
    # Row r's keys lie in [2r, 2r + 1]: the row decides first, then the larger value.
    key = 2.0 * np.repeat(np.arange(rows.shape[0], dtype=np.float64), lengths) + (1.0 - scaled)
    order = np.argsort(key, kind="stable")
    rank = np.arange(order.size, dtype=np.int64) - np.repeat(rows.indptr[:-1], lengths)
    kept = order[rank < n]
    indptr = np.concatenate([[0], np.cumsum(np.minimum(lengths, n))])
    result = sp.csr_matrix((rows.data[kept], rows.indices[kept], indptr), shape=rows.shape)
    result.sort_indices()
    return result


def _prefilter(
    rows: sp.csr_matrix, scaled: np.ndarray, lengths: np.ndarray, n: int, buckets: int = 256
) -> tuple[sp.csr_matrix, np.ndarray]:
    """Drop entries that cannot be among their row's `n` largest, before the sort.

    `scaled` (the values mapped to [0, 1]) falls into `buckets` buckets; a per-row histogram
    (one bincount) gives the highest bucket whose entries and those above reach `n`, and only
    entries from that bucket up are kept: every one of the row's n largest survives, and the
    sort then sees about n per row instead of every co-occurring item.
    """
    bucket = np.minimum((scaled * buckets).astype(np.int64), buckets - 1)
    row_of = np.repeat(np.arange(rows.shape[0], dtype=np.int64), lengths)
    histogram = np.bincount(row_of * buckets + bucket, minlength=rows.shape[0] * buckets)
    from_top = np.cumsum(histogram.reshape(rows.shape[0], buckets)[:, ::-1], axis=1)
    # The first bucket (from the top) at which a row has n entries; rows with fewer keep all.
    threshold = buckets - 1 - np.argmax(from_top >= n, axis=1)
    threshold[from_top[:, -1] < n] = 0
    keep = bucket >= threshold[row_of]
    indptr = np.concatenate([[0], np.cumsum(np.bincount(row_of[keep], minlength=rows.shape[0]))])
    kept = sp.csr_matrix((rows.data[keep], rows.indices[keep], indptr), shape=rows.shape)
    return kept, scaled[keep]


def knn_item_weights(
    matrix: sp.spmatrix,
    neighbors: int,
    shrinkage: float,
    *,
    max_user_items: int = 500,
    block_entries: int = DEFAULT_BLOCK_ENTRIES,
) -> sp.csr_matrix:
    """Sparse item-item weights: each item's `neighbors` nearest items by shrunk cosine.

    Column i of the result holds the similarities s_ji = g_ji / (sqrt(n_j n_i) + shrinkage) of
    i's `neighbors` most similar items j (g = co-occurrence counts, n = item counts, diagonal
    excluded), divided by their sum; a user's score of i, sum over their items j of S[j, i],
    is the share of i's neighbourhood they have.

    Args:
        matrix: users x items; every stored non-zero entry is one interaction.
        neighbors: N, the entries kept per item (>= 1).
        shrinkage: added to the cosine's denominator (>= 0): similarities resting on few
            co-occurrences shrink towards 0.
        max_user_items: users with more items enter the co-occurrence with an evenly spaced
            sample of this many of them (bounds the time on heavy-tailed data).
        block_entries: bound on the entries of one block of X^T X (the working memory).

    Returns:
        float32 CSR [n_items, n_items] with at most `neighbors` entries per column, none on
        the diagonal, every non-empty column summing to 1.

    Raises:
        ConfigError: neighbors < 1 or shrinkage < 0.
        DataError: the matrix is not a 2-D sparse matrix.
    """
    binary = _binary(matrix, "kNN item-item model")
    if isinstance(neighbors, bool) or not isinstance(neighbors, int | np.integer) or neighbors < 1:
        raise ConfigError(f"blend.neighbors must be an integer >= 1, got {neighbors!r}")
    if not shrinkage >= 0:
        raise ConfigError(f"blend.shrinkage must be >= 0, got {shrinkage!r}")
    n_items = binary.shape[1]
    norms = np.sqrt(np.asarray(binary.sum(axis=0)).ravel().astype(np.float64))
    sampled = _cap_user_items(binary, max_user_items)
    by_item = sampled.T.tocsr()
    # Entries of row i of X^T X before merging: sum over i's users of their item counts.
    row_cost = by_item @ np.diff(sampled.indptr).astype(np.float64)
    blocks = []
    start = 0
    while start < n_items:
        # The largest block of rows whose product stays within the budget (at least one row).
        within = int((np.cumsum(row_cost[start : start + MAX_BLOCK_ROWS]) <= block_entries).sum())
        stop = start + max(within, 1)
        # X^T X is symmetric: row i of this block is column i of the full product, so the top
        # N of each row here are the final N neighbours of item i (no merge across blocks).
        block = sp.csr_matrix(by_item[start:stop] @ sampled, dtype=np.float64)
        targets = np.repeat(np.arange(start, stop, dtype=np.int64), np.diff(block.indptr))
        sources = block.indices
        block.data /= norms[targets] * norms[sources] + shrinkage
        block.data[targets == sources] = 0.0  # an item is not its own neighbour
        block.eliminate_zeros()
        blocks.append(top_n_per_row(block, neighbors))
        start = stop
    by_target = sp.vstack(blocks, format="csr") if blocks else sp.csr_matrix((0, n_items))
    # Each item's neighbour weights sum to 1, so a user's item-item score lies in [0, 1] (the
    # share of the item's neighbourhood they have), on the scale of WALS's and EASE's scores:
    # one range of blend.item_item_weight fits every method (ML-100K: equal or better NDCG
    # than the raw cosine sums, whose best weight was 10x smaller).
    totals = np.asarray(by_target.sum(axis=1)).ravel()
    by_target = sp.diags(1.0 / np.where(totals > 0, totals, 1.0)) @ by_target
    weights = by_target.T.tocsr().astype(np.float32)
    weights.sort_indices()
    return weights


def _cap_user_items(binary: sp.csr_matrix, max_items: int) -> sp.csr_matrix:
    """Rows with more than `max_items` entries keep an evenly spaced `max_items` of them."""
    lengths = np.diff(binary.indptr)
    if lengths.max(initial=0) <= max_items:
        return binary
    keep = np.ones(binary.nnz, dtype=bool)
    for row in np.flatnonzero(lengths > max_items):
        start, length = binary.indptr[row], lengths[row]
        chosen = np.zeros(length, dtype=bool)
        chosen[np.linspace(0, length - 1, max_items).astype(np.int64)] = True
        keep[start : start + length] = chosen
    coo = binary.tocoo()
    return sp.csr_matrix(
        (coo.data[keep], (coo.row[keep], coo.col[keep])), shape=binary.shape, dtype=np.float32
    )
