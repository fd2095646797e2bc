"""A simple item-item model to blend with WALS: EASE (Steck, 2019), a closed-form item kNN.

EASE learns an item-item weight matrix B [n_items, n_items] with a zero diagonal by ridge
regression of the binary interaction matrix X on itself:

    B = argmin ||X - X B||^2 + l2 ||B||^2  subject to diag(B) = 0,

whose solution is B = I - P / diag(P) with P = (X^T X + l2 I)^-1 (columns divided by the
diagonal). A user's score of item i is sum over their items j of B[j, i]: every item the user
has "votes" for the items it predicts. One matrix inverse of size n_items, so it is only for
catalogues of a few thousand items (MovieLens-100K and -1M); `max_items` guards against more.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from walsrec.errors import ConfigError, DataError

__all__ = ["ease_item_weights"]


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
    if not sp.issparse(matrix) or len(matrix.shape) != 2:
        raise DataError("item-item model: the training matrix must be a 2-D scipy.sparse matrix")
    if not l2 > 0:
        raise ConfigError(f"blend.item_item_l2 must be > 0, got {l2!r}")
    n_items = matrix.shape[1]
    if n_items > max_items:
        raise ConfigError(
            f"blend: the item-item model needs a dense {n_items} x {n_items} matrix, more than "
            f"blend.max_items={max_items}; set blend.item_item_weight: 0 for this catalogue"
        )
    binary = sp.csr_matrix(matrix, copy=True)
    binary.eliminate_zeros()
    binary.data = np.ones_like(binary.data, dtype=np.float64)
    gram = (binary.T @ binary).toarray()
    gram[np.diag_indices_from(gram)] += float(l2)
    precision = np.linalg.inv(gram)
    weights = -precision / np.diag(precision)[np.newaxis, :]
    weights[np.diag_indices_from(weights)] = 0.0
    return weights.astype(np.float32)
