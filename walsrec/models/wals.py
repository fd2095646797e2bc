"""Weighted alternating least squares (WALS) matrix factorization in TensorFlow.

The algorithm is in this file, but for the graph kernel's solve (`walsrec.models.wals_graph`). For a
ratings matrix R [n_users, n_items] with observed set O, WALS finds user factors X and item factors
Y minimizing

    sum_{(u,i) in O} c_ui (t_ui - p_ui)^2  +  unobserved_weight * sum_{(u,i) not in O} p_ui^2
    + regularization * (sum_u s_u |x_u|^2 + sum_i s_i |y_i|^2)

where p_ui = x_u . y_i is the prediction, t_ui the target (1 in implicit mode, the rating in
explicit mode), c_ui = unobserved_weight + f(r_ui) the confidence of an observed entry, and s the
optional ALS-WR scaling of the regularization by the number of observed entries of a row.

With X fixed the objective is an independent ridge regression per item, and with Y fixed one per
user; WALS alternates the two exact solves, so the objective never increases. Writing the sum
over unobserved entries as (sum over all entries) - (sum over observed entries) makes one user's
normal equations cost O(|O_u| d^2) instead of O(n_items d^2):

    A_u = unobserved_weight * Y^T Y + sum_{i in O_u} (c_ui - unobserved_weight) y_i y_i^T + reg_u I
    b_u = sum_{i in O_u} c_ui t_ui y_i

`Y^T Y` is computed once per half-step. Each row is then solved exactly (Cholesky) or by a few
conjugate-gradient steps warm-started from the previous epoch (`solver`). Two kernels run the
solves (`kernel`): "fused", one TensorFlow custom op (walsrec/native/wals_ops.cc) that reads the
sparse rows directly on TensorFlow's intra-op threads; and "graph", standard TensorFlow ops over
padded chunks: the observed factors of a chunk are gathered into a [rows, max_len, d] block, A
and b are built with batched matmuls and solved by a batched Cholesky factorization (or CG). Rows
are grouped by length so that lengths within a chunk are close (little padding), and each chunk
is capped at `max_chunk_elements` padded elements, which bounds memory. Both kernels solve the
same equations; the tests hold them equal.

Biases (`use_biases`) are handled by augmenting the vectors: prediction = global_mean + b_u + b_i +
x_u . y_i = global_mean + [x_u, b_u, 1] . [y_i, 1, b_i]. When solving users, the free part is
[x_u, b_u], the design vector of an item is q_i = [y_i, 1] and its fixed offset is o_i = b_i,
which adds `- sum (c_ui - unobserved_weight) o_i q_i - unobserved_weight * Q^T o` to b_u. Items
are solved symmetrically.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec import native
from walsrec.errors import ConfigError, DataError, WalsrecError
from walsrec.models.fold_in import FoldIn
from walsrec.models.recommender import predict_pairs, score_rows
from walsrec.models.wals_config import (
    WALSConfig,
    _check_int,
)
from walsrec.models.wals_graph import (
    _design_and_offsets,
    _plan_side,
    _solve_side,
    _unobserved_terms,
)
from walsrec.progress import progress_bar
from walsrec.tensorflow_import import import_tensorflow

tf = import_tensorflow()  # without the start-up lines TensorFlow prints to stderr

__all__ = [
    "EpochStats",
    "WALSConfig",
    "WALSModel",
    "configure_threads",
    "single_threaded_blas",
    "train_wals",
]

logger = logging.getLogger(__name__)

# --------------------------------------------------------------------------------------------
# Trained model
# --------------------------------------------------------------------------------------------


@dataclass
class EpochStats:
    """Training record of one epoch: the full objective after it and the wall time of its two
    half-step solves (the objective's evaluation is not counted)."""

    epoch: int
    loss: float
    seconds: float


@dataclass(eq=False)
class WALSModel:
    """Trained (or partially trained) WALS factors.

    Attributes:
        config: the config it was trained with.
        user_factors: float32 [n_users, n_factors].
        item_factors: float32 [n_items, n_factors].
        user_bias: float32 [n_users], or None without biases.
        item_bias: float32 [n_items], or None without biases.
        global_mean: added to every prediction (0 unless explicit mode with biases).
        history: one `EpochStats` per epoch trained.
        item_counts: observed entries per item in the training matrix; only `fold_in` with the
            "item_power" weighting needs it.
    """

    config: WALSConfig
    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray | None
    item_bias: np.ndarray | None
    global_mean: float
    history: list[EpochStats] = field(default_factory=list)
    item_counts: np.ndarray | None = None
    # The fold-in solver (its Y^T Y), built on first use: treat a model as immutable.
    _fold_in_cache: dict[str, Any] = field(default_factory=dict, init=False, repr=False)

    @property
    def n_users(self) -> int:
        return int(self.user_factors.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_factors.shape[0])

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predictions for (user, item) index pairs.

        Args:
            users: int [n] user indices.
            items: int [n] item indices, paired with `users`.

        Returns:
            float32 [n]: global_mean + b_u + b_i + x_u . y_i (biases only when trained with them).

        Raises:
            DataError: the arrays differ in length or hold indices out of range.
        """
        users = _index_array("users", users, self.n_users)
        items = _index_array("items", items, self.n_items)
        if users.shape != items.shape:
            raise DataError(
                f"users and items must have the same length, got {users.size} and {items.size}"
            )
        return predict_pairs(self, users, items)

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Dense scores of every item for some users, for ranking (same formula as `predict`).

        Args:
            users: int [n] user indices.

        Returns:
            float32 [n, n_items].
        """
        return score_rows(self, _index_array("users", users, self.n_users))

    def fold_in(
        self, items: np.ndarray, values: np.ndarray | None = None
    ) -> tuple[np.ndarray, float]:
        """Factors of a new user from their observed items, without retraining.

        This is exactly the user half-step of training (same weights, targets, regularization,
        the exact solve) against this model's item factors, solved by the one inference-time
        fold-in, `walsrec.models.fold_in.FoldIn` (NumPy, float64). Duplicate items are summed, as
        when the training matrix is built; a user with no items gets zero factors.

        Args:
            items: int [n] item indices the user interacted with (may be empty).
            values: float [n] ratings or counts; None means 1.0 each.

        Returns:
            (float32 [n_factors] factors, bias), the bias 0.0 for a model without biases.

        Raises:
            DataError: indices out of range, or values negative, non-finite or misshapen.
        """
        items = _index_array("items", items, self.n_items)
        if values is None:
            values = np.ones(items.shape, dtype=np.float64)
        else:
            values = np.asarray(values, dtype=np.float64).reshape(-1)
            if values.shape != items.shape:
                raise DataError(
                    f"values must have one entry per item, got {values.size} values for "
                    f"{items.size} items"
                )
        row = sp.csr_matrix(
            (values, (np.zeros_like(items), items)), shape=(1, self.n_items), dtype=np.float64
        )
        row = _canonical_matrix(row, name="fold-in values")
        config = self.config
        if config.use_biases != (self.item_bias is not None):
            raise DataError(
                f"config.use_biases is {config.use_biases} but the model "
                f"{'has no' if self.item_bias is None else 'has'} item biases"
            )
        if config.observed_weighting == "item_power" and self.item_counts is None:
            raise DataError(
                "fold_in with observed_weighting 'item_power' needs the model's item_counts "
                "(observed entries per item in training); set WALSModel.item_counts"
            )
        if "solver" not in self._fold_in_cache:
            self._fold_in_cache["solver"] = FoldIn(
                config.to_dict(),
                self.item_factors,
                self.item_bias,
                self.global_mean,
                self.item_counts,
            )
        return self._fold_in_cache["solver"].solve(row.indices, row.data)


def _index_array(name: str, values: Any, size: int) -> np.ndarray:
    array = np.asarray(values)
    if array.size == 0:
        return np.zeros(0, dtype=np.int64)
    if not np.issubdtype(array.dtype, np.integer):
        raise DataError(f"{name} must be integer indices, got dtype {array.dtype}")
    array = array.astype(np.int64).reshape(-1)
    if array.min() < 0 or array.max() >= size:
        bad = array[(array < 0) | (array >= size)][0]
        raise DataError(f"{name} index {bad} is out of range: valid indices are 0..{size - 1}")
    return array


# --------------------------------------------------------------------------------------------
# Input checks and per-entry weights
# --------------------------------------------------------------------------------------------


def _canonical_matrix(matrix: Any, *, name: str, dtype: Any = np.float64) -> sp.csr_matrix:
    """A CSR matrix of `dtype` with sorted, summed duplicates and no stored zeros.

    Stored zeros are dropped, so they count as unobserved, as everywhere else in scipy. A matrix
    that is already such a CSR matrix is returned as is (it is never modified); anything else is
    copied first.
    """
    if not sp.issparse(matrix):
        raise DataError(
            f"{name} must be a 2-D scipy.sparse matrix (CSR) of users x items, "
            f"got {type(matrix).__name__}"
        )
    if len(matrix.shape) != 2:
        raise DataError(f"{name} must be 2-D (users x items), got shape {matrix.shape}")
    canonical = (
        matrix.format == "csr"
        and matrix.dtype == dtype
        and matrix.has_canonical_format
        and not np.any(matrix.data == 0)
    )
    csr = sp.csr_matrix(matrix) if canonical else sp.csr_matrix(matrix, dtype=dtype, copy=True)
    if not canonical:
        csr.sum_duplicates()
    if not np.all(np.isfinite(csr.data)):
        raise DataError(f"{name} holds non-finite values (NaN or infinity)")
    if csr.data.size and csr.data.min() < 0:
        raise DataError(
            f"{name} holds negative values (smallest {csr.data.min():g}); WALS needs ratings or "
            "counts >= 0"
        )
    if not canonical:
        csr.eliminate_zeros()
        csr.sort_indices()
    return csr


def _entry_weights(
    values: np.ndarray,
    item_ids: np.ndarray,
    item_counts: np.ndarray | None,
    config: WALSConfig,
    global_mean: float,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Per observed entry: the extra confidence f(r) = c - unobserved_weight, and c * t (None
    in implicit mode, where t = 1 and c * t is unobserved_weight + f(r): not stored).

    Keeping f(r) rather than c avoids computing (unobserved_weight + f) - unobserved_weight.
    """
    alpha = config.alpha
    if config.observed_weighting == "constant":
        extra = np.full(values.shape, alpha, dtype=np.float64)
    elif config.observed_weighting == "linear":
        extra = alpha * values
    elif config.observed_weighting == "proportional":
        extra = alpha * values - config.unobserved_weight
    elif config.observed_weighting == "log":
        extra = alpha * np.log1p(values / config.epsilon)
    else:  # item_power
        counts = np.maximum(np.asarray(item_counts, dtype=np.float64)[item_ids], 1.0)
        extra = alpha * counts ** (-config.item_weight_exponent)
    if config.mode == "implicit":
        return extra, None
    return extra, (config.unobserved_weight + extra) * _targets(values, config, global_mean)


def _targets(values: np.ndarray, config: WALSConfig, global_mean: float) -> np.ndarray:
    """t per observed entry: 1 (implicit) or the rating minus the global mean (explicit)."""
    if config.mode == "implicit":
        return np.ones_like(values)
    return values - global_mean


def _row_regularization(lengths: np.ndarray, config: WALSConfig) -> np.ndarray:
    """reg_u per row: regularization, times the row's entry count (at least 1) for "count"."""
    if config.regularization_scaling == "count":
        return config.regularization * np.maximum(lengths, 1).astype(np.float64)
    return np.full(lengths.shape, config.regularization, dtype=np.float64)


@dataclass
class _Interactions:
    """The training matrix prepared once: both orientations with per-entry weights.

    The per-entry arrays are released (set to None) once the solvers hold their own copies.
    """

    user_indptr: np.ndarray
    user_items: np.ndarray | None  # column index of each entry, CSR (user-major) order
    item_indptr: np.ndarray
    item_users: np.ndarray | None  # row index of each entry, CSC (item-major) order
    csr_to_csc: np.ndarray | None  # entry permutation: csc_array = csr_array[csr_to_csc]
    extra: np.ndarray | None  # f(r) = c - unobserved_weight, CSR order
    # c * t, CSR order; None in implicit mode, where it is unobserved_weight + extra (t = 1):
    # `_weighted_target` computes it for the graph kernel, the fused one as it reads an entry.
    weighted_target: np.ndarray | None
    targets: np.ndarray | None  # t, CSR order; None in implicit mode (all 1)
    item_counts: np.ndarray
    global_mean: float


def _prepare_interactions(matrix: sp.csr_matrix, config: WALSConfig) -> _Interactions:
    n_users, n_items = matrix.shape
    item_counts = np.bincount(matrix.indices, minlength=n_items)
    global_mean = 0.0
    if config.use_biases and config.mode == "explicit":
        global_mean = float(matrix.data.mean(dtype=np.float64))
    # Per-entry values in the training dtype: at 20M entries each float64 array is 160 MB.
    dtype = np.dtype(config.dtype)
    values = matrix.data.astype(dtype, copy=False)
    extra, weighted_target = _entry_weights(
        values, matrix.indices, item_counts, config, global_mean
    )
    # In memory the fused kernel's tensors wrap as they are (`_tensor_and_array_of`).
    extra = _aligned_copy(extra, dtype)
    if weighted_target is not None:
        weighted_target = weighted_target.astype(dtype, copy=False)
    # Transpose the entry positions rather than the values, so every per-entry array is
    # reordered by the same permutation.
    position_dtype = np.int32 if matrix.nnz < np.iinfo(np.int32).max else np.int64
    positions = sp.csr_matrix(
        (np.arange(matrix.nnz, dtype=position_dtype), matrix.indices, matrix.indptr),
        shape=matrix.shape,
    ).tocsc()
    positions.sort_indices()
    targets = None
    if config.mode == "explicit":
        targets = _targets(values, config, global_mean).astype(dtype, copy=False)
    return _Interactions(
        user_indptr=matrix.indptr.astype(np.int64),
        user_items=matrix.indices.astype(np.int32, copy=False),
        item_indptr=positions.indptr.astype(np.int64),
        item_users=_aligned_copy(positions.indices, np.int32),
        csr_to_csc=positions.data,
        extra=extra,
        weighted_target=weighted_target,
        targets=targets,
        item_counts=item_counts,
        global_mean=global_mean,
    )


# --------------------------------------------------------------------------------------------
# The batched least-squares solve: the fused kernel (the graph kernel: wals_graph)
# --------------------------------------------------------------------------------------------


@dataclass
class _FusedSide:
    """One side's rows for the fused kernel: CSR arrays, per-entry values in this side's order."""

    indptr: tf.Tensor  # int64 [n_rows + 1]
    indices: tf.Tensor  # int32 [nnz] the other side's index of each entry
    extra: tf.Tensor  # [nnz] f(r)
    # [nnz] c * t, or [1] = unobserved_weight when target_from_extra (implicit: c * t = w0 + f)
    weighted_target: tf.Tensor
    row_regularization: tf.Tensor  # [n_rows]
    target_from_extra: bool = False
    # The same memory as `indices` and `extra`, as NumPy (what the native objective reads).
    indices_array: np.ndarray | None = None
    extra_array: np.ndarray | None = None


def _fused_side(
    indptr: np.ndarray,
    other_indices: np.ndarray,
    extra: np.ndarray,
    weighted_target: np.ndarray | None,
    row_regularization: np.ndarray,
    dtype: tf.DType,
    unobserved_weight: float,
    entry_order: np.ndarray | None = None,
    *,
    indices_owned: bool = False,
    extra_owned: bool = False,
) -> _FusedSide:
    """`entry_order` reorders CSR-ordered values into this side's order (the item side).
    `weighted_target` None: implicit feedback, where the kernel adds unobserved_weight to each
    entry's extra confidence instead of reading a per-entry array. `indices_owned`,
    `extra_owned`: the array is `_Interactions`' own (dropped after this, never written), so
    the tensor may wrap it (`_aligned_copy`) instead of copying it."""
    indices, indices_array = _tensor_and_array_of(other_indices, tf.int32, owned=indices_owned)
    extra_tensor, extra_array = _tensor_and_array_of(extra, dtype, entry_order, owned=extra_owned)
    if weighted_target is None:
        weighted = tf.constant([unobserved_weight], dtype)
    else:
        weighted = _tensor_of(weighted_target, dtype, entry_order)
    return _FusedSide(
        indptr=tf.constant(indptr, tf.int64),
        indices=indices,
        extra=extra_tensor,
        weighted_target=weighted,
        row_regularization=tf.constant(row_regularization, dtype),
        target_from_extra=weighted_target is None,
        indices_array=indices_array,
        extra_array=extra_array,
    )


# TensorFlow wraps a buffer without copying only if it is aligned to this many bytes.
_TENSOR_ALIGNMENT = 64


def _aligned_empty(shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
    """An uninitialized C-ordered array whose data TensorFlow can wrap without a copy."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    raw = np.empty(nbytes + _TENSOR_ALIGNMENT, np.uint8)
    offset = -raw.ctypes.data % _TENSOR_ALIGNMENT
    return raw[offset : offset + nbytes].view(dtype).reshape(shape)


def _wrap(array: np.ndarray) -> tf.Tensor:
    """A tensor over `array`'s memory (from `_aligned_empty`; never written after this)."""
    return tf.experimental.dlpack.from_dlpack(array.__dlpack__())


def _tensor_of(array: np.ndarray, dtype: tf.DType, order: np.ndarray | None = None) -> tf.Tensor:
    """A 1-D tensor of array (or of array[order]) that owns a single copy of the values.

    `tf.constant` holds about two copies of a large array at its peak (80 MB more per 20M
    floats); this copies once into an aligned NumPy buffer that the tensor then wraps through
    DLPack (the buffer lives as long as the tensor).
    """
    return _tensor_and_array_of(array, dtype, order)[0]


def _aligned_copy(array: np.ndarray, dtype: Any) -> np.ndarray:
    """`array` as `dtype` in memory a tensor can wrap (`_tensor_and_array_of(..., owned=True)`
    then takes it without a copy)."""
    copy = _aligned_empty(array.shape, np.dtype(dtype))
    copy[...] = array
    return copy


def _tensor_and_array_of(
    array: np.ndarray, dtype: tf.DType, order: np.ndarray | None = None, *, owned: bool = False
) -> tuple[tf.Tensor, np.ndarray]:
    """`_tensor_of`, and the NumPy buffer the tensor wraps (the same memory: never write it).

    `owned`: nothing else holds or writes `array`, so when it is already the tensor's dtype
    and aligned (`_aligned_copy`) the tensor wraps it as it is.
    """
    numpy_dtype = np.dtype(dtype.as_numpy_dtype)
    if (
        owned
        and order is None
        and array.dtype == numpy_dtype
        and array.flags.c_contiguous
        and array.ctypes.data % _TENSOR_ALIGNMENT == 0
    ):
        return _wrap(array), array
    if order is None:
        buffer = _aligned_copy(array, numpy_dtype)
    else:
        buffer = _aligned_empty((order.size,), numpy_dtype)
        # mode="clip": the default "raise" writes through a temporary copy of the output.
        np.take(array.astype(numpy_dtype, copy=False), order, out=buffer, mode="clip")
    return _wrap(buffer), buffer


def _solve_side_fused(
    side: _FusedSide, other_free: tf.Tensor, previous: tf.Tensor, config: WALSConfig
) -> tf.Tensor:
    """Every row of one side in one call of the fused op: [n_rows, d]."""
    design, offsets = _design_and_offsets(other_free, config.use_biases)
    gram, offset_term = _unobserved_terms(design, offsets, config.unobserved_weight)
    return native.load().wals_solve_rows(
        design,
        offsets,
        gram,
        offset_term,
        side.indptr,
        side.indices,
        side.extra,
        side.weighted_target,
        side.row_regularization,
        previous,
        solver=config.solver,
        cg_steps=config.cg_steps,
        target_from_extra=side.target_from_extra,
    )


_warned_no_fused_kernel = False


def _resolve_kernel(config: WALSConfig, log: logging.Logger) -> str:
    """ "fused" or "graph" for this config: auto takes fused when the op builds and loads."""
    global _warned_no_fused_kernel
    if config.kernel == "graph":
        return "graph"
    try:
        native.load()
    except native.NativeBuildError as error:
        if config.kernel == "fused":
            raise
        if not _warned_no_fused_kernel:
            _warned_no_fused_kernel = True
            log.warning(
                "The fused WALS kernel is unavailable, using TensorFlow ops (slower): %s", error
            )
        return "graph"
    return "fused"


# --------------------------------------------------------------------------------------------
# The objective
# --------------------------------------------------------------------------------------------


def _augmented(
    free: np.ndarray, use_biases: bool, bias_first: bool, dtype: Any = np.float64
) -> np.ndarray:
    """[x_u, b_u, 1] for users (bias_first) and [y_i, 1, b_i] for items, in `dtype`."""
    free = np.ascontiguousarray(free, dtype=dtype)
    if not use_biases:
        return free
    ones = np.ones((free.shape[0], 1), dtype=dtype)
    factors, bias = free[:, :-1], free[:, -1:]
    return np.hstack([factors, bias, ones] if bias_first else [factors, ones, bias])


# Observed entries per call of the objective's sums: bounds the gathered [block, d] arrays.
_OBJECTIVE_BLOCK = 1 << 18


@dataclass
class _ObservedEntries:
    """The observed entries in CSR order, as the objective reads them (tensors, so the fused
    kernel's user side can share its own)."""

    users: tf.Tensor | None  # int32 [nnz]; None when the native sums read `indptr` instead
    items: tf.Tensor  # int32 [nnz]
    extra: tf.Tensor  # [nnz] f(r)
    targets: tf.Tensor | None  # [nnz] t; None: all 1 (implicit mode)
    # For the native kernel (`walsrec_observed_sums`): the user CSR and the same entries as
    # NumPy arrays; None when the ranking kernels are unavailable (TensorFlow sums them).
    indptr: np.ndarray | None = None
    items_array: np.ndarray | None = None
    extra_array: np.ndarray | None = None
    targets_array: np.ndarray | None = None


@functools.cache
def _observed_sums(jit_compile: bool) -> Callable[..., tuple[tf.Tensor, tf.Tensor]]:
    """sum c (t - p)^2 and sum p^2 over a block of observed entries; entries at positions
    >= `valid` are padding (index 0) and count for nothing."""

    @tf.function(jit_compile=jit_compile, autograph=False)
    def sums(users, items, entry_users, entry_items, extra, targets, valid, unobserved_weight):
        mask = tf.cast(tf.range(tf.shape(entry_users)[0]) < valid, users.dtype)
        predictions = tf.reduce_sum(
            tf.gather(users, entry_users) * tf.gather(items, entry_items), axis=1
        )
        residuals = targets - predictions
        confidence = (unobserved_weight + extra) * mask
        squared = tf.reduce_sum(mask * predictions * predictions)
        return tf.reduce_sum(confidence * residuals * residuals), squared

    return sums


_THREADPOOLS: Any = None


def single_threaded_blas() -> Any:
    """A context in which NumPy's BLAS runs on one thread.

    Between two calls of the fused op, TensorFlow's intra-op threads and OpenBLAS's threads
    compete for the same cores; on a busy 2-core machine a 15k x 96 float64 Gram matrix took
    0.55 s with OpenBLAS's threads inside a training process and 7 ms on one thread.
    """
    global _THREADPOOLS
    if _THREADPOOLS is None:
        from threadpoolctl import ThreadpoolController

        _THREADPOOLS = ThreadpoolController()
    return _THREADPOOLS.limit(limits=1, user_api="blas")


# Rows per block of the initial factors' draws and of the objective's float64 Gram and penalty:
# bounds their copies (at 10^7 users a whole-matrix float64 copy was 5 GB, and three were alive
# at once).
_ROW_BLOCK = 1 << 16


def _gram_and_penalty(
    free: np.ndarray, row_reg: np.ndarray, use_biases: bool, bias_first: bool
) -> tuple[np.ndarray, float]:
    """X^T X of the augmented factors and sum_r reg_r * |free_r|^2, in float64, a block of
    rows at a time."""
    gram = None
    penalty = 0.0
    with single_threaded_blas():
        for start in range(0, free.shape[0], _ROW_BLOCK):
            block = free[start : start + _ROW_BLOCK]
            augmented = _augmented(block, use_biases, bias_first=bias_first)
            product = augmented.T @ augmented
            gram = product if gram is None else gram + product
            squares = np.sum(block.astype(np.float64) ** 2, axis=1)
            penalty += float(np.dot(row_reg[start : start + _ROW_BLOCK], squares))
    return gram, penalty


def _objective(
    user_free: np.ndarray,
    item_free: np.ndarray,
    entries: _ObservedEntries,
    row_reg_users: np.ndarray,
    row_reg_items: np.ndarray,
    config: WALSConfig,
) -> float:
    """The full training objective; the sums over all entries in float64.

    The sum of p^2 over all n_users * n_items entries is trace((X^T X)(Y^T Y)), from which the
    observed entries' p^2 is subtracted.
    """
    user_gram, penalty = _gram_and_penalty(user_free, row_reg_users, config.use_biases, True)
    item_gram, item_penalty = _gram_and_penalty(item_free, row_reg_items, config.use_biases, False)
    all_squared = float(np.sum(user_gram * item_gram))
    penalty += item_penalty
    if entries.indptr is not None:
        dtype = entries.extra_array.dtype  # the training dtype: float32 factors convert exactly
        observed_error, observed_squared = _native_observed_sums(
            _augmented(user_free, config.use_biases, bias_first=True, dtype=dtype),
            _augmented(item_free, config.use_biases, bias_first=False, dtype=dtype),
            entries,
            config,
        )
        unobserved = config.unobserved_weight * (all_squared - observed_squared)
        return observed_error + unobserved + penalty
    observed_error = 0.0
    observed_squared = 0.0
    dtype = tf.as_dtype(config.dtype)
    users = _augmented(user_free, config.use_biases, bias_first=True)
    items = _augmented(item_free, config.use_biases, bias_first=False)
    user_table, item_table = tf.constant(users, dtype), tf.constant(items, dtype)
    unobserved_weight = tf.constant(config.unobserved_weight, dtype)
    sums = _observed_sums(config.jit_compile)
    n_entries = int(entries.users.shape[0])
    # Blocks of _OBJECTIVE_BLOCK entries, or of the next power of two for a smaller matrix
    # (not 2^18 for 56k entries: padding is gathered and summed too).
    block = min(_OBJECTIVE_BLOCK, 1 << max(n_entries - 1, 1).bit_length())
    ones = tf.ones([block], dtype)
    for start in range(0, n_entries, block):
        valid = min(block, n_entries - start)
        # The last block is padded to the full size, so one shape compiles.
        padding = [[0, block - valid]]
        arrays = [
            tf.pad(array[start : start + valid], padding)
            for array in (entries.users, entries.items, entries.extra)
        ]
        if entries.targets is None:
            targets = ones
        else:
            targets = tf.pad(entries.targets[start : start + valid], padding)
        error, squared = sums(
            user_table, item_table, *arrays, targets, tf.constant(valid), unobserved_weight
        )
        observed_error += float(error)
        observed_squared += float(squared)
    return observed_error + config.unobserved_weight * (all_squared - observed_squared) + penalty


def _native_observed_sums(
    users: np.ndarray, items: np.ndarray, entries: _ObservedEntries, config: WALSConfig
) -> tuple[float, float]:
    """The objective's observed sums by the native kernel: a pass over the user CSR with each
    user's row in cache, on every core (0.9 s -> about 0.1 s per ML-20M epoch against the
    TensorFlow blocks, which gather both sides' rows per entry)."""
    library = native.kernels()
    extra = entries.extra_array
    users = np.ascontiguousarray(users, dtype=extra.dtype)
    items = np.ascontiguousarray(items, dtype=extra.dtype)
    n_rows = users.shape[0]
    per_row = np.empty((2, n_rows), dtype=np.float64)
    function = (
        library.walsrec_observed_sums_f32
        if extra.dtype == np.float32
        else library.walsrec_observed_sums_f64
    )
    targets = entries.targets_array
    if targets is not None:
        targets = np.ascontiguousarray(targets, dtype=extra.dtype)
    function(
        users.ctypes.data,
        items.ctypes.data,
        n_rows,
        users.shape[1],
        entries.indptr.ctypes.data,
        entries.items_array.ctypes.data,
        extra.ctypes.data,
        None if targets is None else targets.ctypes.data,
        float(config.unobserved_weight),
        per_row[0].ctypes.data,
        per_row[1].ctypes.data,
        native.threads_for(entries.items_array.size),
    )
    # Summed here, in one order, so the loss does not depend on the thread count.
    return float(np.sum(per_row[0])), float(np.sum(per_row[1]))


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _weighted_target(data: _Interactions, config: WALSConfig) -> np.ndarray:
    """c * t per entry, CSR order: implicit mode's unobserved_weight + extra computed in the
    training dtype, as the fused kernel computes it."""
    if data.weighted_target is not None:
        return data.weighted_target
    return data.extra.dtype.type(config.unobserved_weight) + data.extra


def _prepare_sides(
    data: _Interactions,
    kernel: str,
    row_reg_users: np.ndarray,
    row_reg_items: np.ndarray,
    dimension: int,
    config: WALSConfig,
) -> tuple[Any, Any, _ObservedEntries]:
    """Each side's solver input and the objective's entries, as tensors; releases `data`'s
    per-entry arrays as they are copied, which keeps the peak memory near one copy."""
    dtype = tf.as_dtype(config.dtype)
    native_sums = kernel == "fused" and native.kernels() is not None
    entry_users = None
    if not native_sums:
        entry_users = _tensor_of(
            np.repeat(
                np.arange(data.user_indptr.size - 1, dtype=np.int32), np.diff(data.user_indptr)
            ),
            tf.int32,
        )
    if kernel == "fused":
        user_side = _fused_side(
            data.user_indptr,
            data.user_items,
            data.extra,
            data.weighted_target,
            row_reg_users,
            dtype,
            config.unobserved_weight,
            # The user side's indices are the caller's matrix's: copied. The extra confidences
            # are ours, in CSR order: wrapped (80 MB less at the peak for 20M entries).
            extra_owned=True,
        )
        # The objective reads the user side's own tensors: CSR order, no second copy.
        entries = _ObservedEntries(
            users=entry_users,
            items=user_side.indices,
            extra=user_side.extra,
            targets=None,
        )
        if native_sums:
            entries.indptr = np.ascontiguousarray(data.user_indptr, dtype=np.int64)
            entries.items_array = user_side.indices_array
            entries.extra_array = user_side.extra_array
        data.user_items = None
        item_side = _fused_side(
            data.item_indptr,
            data.item_users,
            data.extra,
            data.weighted_target,
            row_reg_items,
            dtype,
            config.unobserved_weight,
            entry_order=data.csr_to_csc,
            indices_owned=True,
        )
    else:
        weighted_target = _weighted_target(data, config)
        user_side = _plan_side(
            data.user_indptr,
            data.user_items,
            data.extra,
            weighted_target,
            row_reg_users,
            dimension,
            config.max_chunk_elements,
            dtype,
            config.solver,
        )
        item_side = _plan_side(
            data.item_indptr,
            data.item_users,
            data.extra,
            weighted_target,
            row_reg_items,
            dimension,
            config.max_chunk_elements,
            dtype,
            config.solver,
            entry_order=data.csr_to_csc,
        )
        entries = _ObservedEntries(
            users=entry_users,
            items=_tensor_of(data.user_items, tf.int32),
            extra=_tensor_of(data.extra, dtype),
            targets=None,
        )
    if data.targets is not None:
        entries.targets, entries.targets_array = _tensor_and_array_of(data.targets, dtype)
    data.user_items = data.item_users = data.csr_to_csc = None
    data.extra = data.weighted_target = data.targets = None
    return user_side, item_side, entries


def _initial_factors(
    rng: np.random.Generator, n_rows: int, scale: float, dimension: int, config: WALSConfig
) -> np.ndarray:
    """N(0, scale) factors (and a bias column of zeros) in the training dtype: the float64 draws
    a block of rows at a time, rounded as they come (the same values as one float64 draw
    rounded at once, without its copy: 5 GB at 10^7 users x 64), in memory a tensor can wrap."""
    init = _aligned_empty((n_rows, dimension), np.dtype(config.dtype))
    init[:, config.n_factors :] = 0
    for start in range(0, n_rows, _ROW_BLOCK):
        rows = min(_ROW_BLOCK, n_rows - start)
        init[start : start + rows, : config.n_factors] = rng.normal(
            0.0, scale, size=(rows, config.n_factors)
        )
    return init


def train_wals(
    matrix: sp.csr_matrix,
    config: WALSConfig,
    *,
    progress: bool = False,
    callback: Callable[[int, WALSModel], bool | None] | None = None,
    log: logging.Logger | None = None,
    track_loss: bool = True,
) -> WALSModel:
    """Train WALS on a users x items matrix.

    Each epoch solves all users with the items fixed, then all items with the users fixed, and
    records the full objective (which never increases).

    Args:
        matrix: scipy.sparse [n_users, n_items] of ratings or counts >= 0 (1.0 for implicit data
            without ratings); stored zeros count as unobserved, duplicates are summed.
        config: the hyperparameters.
        progress: show a tqdm bar over epochs with the loss (only when stderr is a terminal;
            the per-epoch log line is then DEBUG).
        callback: called as callback(epoch, model_so_far) after each epoch (epochs count from
            1); returning True stops training after that epoch.
        log: logger for the per-epoch loss (INFO); defaults to this module's.
        track_loss: compute the objective after every epoch (the history's loss). A tuning
            trial, which is judged on validation only, turns it off: the loss then reads NaN,
            and the factors themselves are checked for non-finite values instead.

    Returns:
        The trained model; `history` holds one `EpochStats` per epoch run.

    Raises:
        ConfigError: an invalid config value.
        DataError: the matrix is not 2-D sparse, is empty, or holds negative or non-finite values.
        WalsrecError: the solve failed numerically or ran out of memory.
    """
    log = log or logger
    if not isinstance(config, WALSConfig):
        raise ConfigError(f"config must be a WALSConfig, got {type(config).__name__}")
    matrix = _canonical_matrix(matrix, name="training matrix", dtype=np.dtype(config.dtype))
    n_users, n_items = matrix.shape
    if n_users == 0 or n_items == 0 or matrix.nnz == 0:
        raise DataError(
            f"training matrix has no observed entries (shape {n_users} x {n_items}, "
            f"{matrix.nnz} non-zero values)"
        )
    data = _prepare_interactions(matrix, config)
    n_entries = matrix.nnz
    del matrix  # `data` holds what training needs: drop our copy (if one was made)
    dimension = config.n_factors + (1 if config.use_biases else 0)
    row_reg_users = _row_regularization(np.diff(data.user_indptr), config)
    row_reg_items = _row_regularization(np.diff(data.item_indptr), config)

    rng = np.random.default_rng(config.seed)
    scale = config.init_scale / math.sqrt(config.n_factors)
    user_init = _initial_factors(rng, n_users, scale, dimension, config)
    item_init = _initial_factors(rng, n_items, scale, dimension, config)

    kernel = _resolve_kernel(config, log)
    try:
        user_side, item_side, entries = _prepare_sides(
            data, kernel, row_reg_users, row_reg_items, dimension, config
        )
        # The tensors wrap the draws' memory: no second copy (2.5 GB at 10^7 users x 64).
        user_free, item_free = _wrap(user_init), _wrap(item_init)
    except tf.errors.OpError as error:
        raise _tensorflow_failure(error, "preparing the training data") from None
    del user_init, item_init

    log.info(
        "WALS: %d users x %d items, %d entries, %d factors, %s mode, %d epochs, %s solver, "
        "%s kernel",
        n_users,
        n_items,
        n_entries,
        config.n_factors,
        config.mode,
        config.epochs,
        config.solver,
        kernel,
    )
    history: list[EpochStats] = []
    parallel = config.parallel_chunks or os.cpu_count() or 1
    pool = None
    if kernel == "graph" and parallel > 1:
        pool = ThreadPoolExecutor(parallel, thread_name_prefix="wals")
    bar = progress_bar(progress, total=config.epochs, desc="WALS", unit="epoch")
    # One display per epoch: the bar on a terminal, else the log line (at DEBUG beside a bar).
    epoch_level = logging.INFO if bar is None else logging.DEBUG
    try:
        for epoch in range(1, config.epochs + 1):
            started = time.perf_counter()
            try:
                if kernel == "fused":
                    user_free = _solve_side_fused(user_side, item_free, user_free, config)
                    item_free = _solve_side_fused(item_side, user_free, item_free, config)
                else:
                    user_free = _solve_side(user_side, item_free, user_free, config, pool)
                    item_free = _solve_side(item_side, user_free, item_free, config, pool)
                # Read-only views of the tensors: `.numpy()` copies (2.5 GB a side at 10^7 x 64).
                user_values, item_values = np.asarray(user_free), np.asarray(item_free)
            except tf.errors.OpError as error:
                raise _tensorflow_failure(error, f"epoch {epoch}") from None
            seconds = time.perf_counter() - started
            if track_loss:
                loss = _objective(
                    user_values, item_values, entries, row_reg_users, row_reg_items, config
                )
                finite = math.isfinite(loss)
            else:
                loss = math.nan
                finite = bool(np.isfinite(user_values).all() and np.isfinite(item_values).all())
            if not finite:
                raise _not_finite(f"epoch {epoch}")
            history.append(EpochStats(epoch=epoch, loss=loss, seconds=seconds))
            message = "WALS epoch %d/%d: loss %.6g (%.3f s)"
            log.log(epoch_level, message, epoch, config.epochs, loss, seconds)
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{loss:.5g}")
            stop = False
            if callback is not None:
                snapshot = _to_model(user_values, item_values, data, config, list(history))
                stop = callback(epoch, snapshot)
                del snapshot
            # Views of this epoch's tensors: without them the tensors are freed as the next
            # epoch replaces them (at 10^7 users each copy of the user side is 2.5 GB).
            del user_values, item_values
            if isinstance(stop, bool | np.bool_) and stop:
                log.info("WALS stopped by the callback after epoch %d", epoch)
                break
    finally:
        if pool is not None:
            pool.shutdown()
        if bar is not None:
            bar.close()
    return _to_model(user_free.numpy(), item_free.numpy(), data, config, history)


def _to_model(
    user_free: np.ndarray,
    item_free: np.ndarray,
    data: _Interactions,
    config: WALSConfig,
    history: list[EpochStats],
) -> WALSModel:
    n_factors = config.n_factors
    user_bias = item_bias = None
    if config.use_biases:
        user_bias = user_free[:, n_factors].astype(np.float32)
        item_bias = item_free[:, n_factors].astype(np.float32)
    return WALSModel(
        config=config,  # frozen: shared, never changed
        user_factors=np.ascontiguousarray(user_free[:, :n_factors], dtype=np.float32),
        item_factors=np.ascontiguousarray(item_free[:, :n_factors], dtype=np.float32),
        user_bias=user_bias,
        item_bias=item_bias,
        global_mean=data.global_mean,
        history=history,
        item_counts=data.item_counts.copy(),
    )


def _not_finite(stage: str) -> WalsrecError:
    # On CPU a failed Cholesky factorization does not raise: it fills the factor with NaN.
    return WalsrecError(
        f"WALS produced non-finite factors during {stage}: a least-squares system was not "
        "numerically positive definite (ratings too large for the dtype?); try dtype float64 "
        "or a larger regularization"
    )


def _tensorflow_failure(error: tf.errors.OpError, stage: str) -> WalsrecError:
    """One clear message instead of a TensorFlow stack trace (kept in the debug log)."""
    logger.debug("TensorFlow error during %s", stage, exc_info=error)
    if isinstance(error, tf.errors.ResourceExhaustedError):
        return WalsrecError(
            f"WALS ran out of memory during {stage}; lower max_chunk_elements or n_factors"
        )
    # The message is a trace of graph nodes around the actual error line: keep that line only.
    lines = [
        line.strip()
        for line in (error.message or "").splitlines()
        if line.strip()
        and not line[0].isspace()
        and not line.startswith(("Graph execution error", "Detected at node"))
    ]
    return WalsrecError(
        f"WALS failed in TensorFlow during {stage}: {lines[-1] if lines else error}"
    )


def configure_threads(intra_op: int | None = None, inter_op: int | None = None) -> None:
    """Set TensorFlow's thread pools; call it before TensorFlow runs any op.

    Args:
        intra_op: threads inside one op (matmul, Cholesky); 0 lets TensorFlow choose; None keeps
            the current setting.
        inter_op: ops run in parallel; same conventions.

    Raises:
        ConfigError: a value is not None or an integer >= 0.
    """
    for key, value in (("intra_op", intra_op), ("inter_op", inter_op)):
        if value is not None:
            _check_int(key, value, minimum=0)
    try:
        if intra_op is not None:
            tf.config.threading.set_intra_op_parallelism_threads(int(intra_op))
        if inter_op is not None:
            tf.config.threading.set_inter_op_parallelism_threads(int(inter_op))
    except RuntimeError:
        logger.warning(
            "TensorFlow has already started, so its thread settings (intra_op=%s, inter_op=%s) "
            "are unchanged; call configure_threads before training",
            intra_op,
            inter_op,
        )
