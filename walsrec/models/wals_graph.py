"""The graph kernel of WALS: the batched least-squares solve in standard TensorFlow ops.

`walsrec.models.wals` solves each half-step with the fused op (walsrec/native/wals_ops.cc) when
it builds, else with this kernel (`kernel: graph`, or `auto` without a compiler): the rows of a
side are grouped by length into padded chunks (`_plan_side`), the observed factors of a chunk
are gathered into a [rows, max_len, d] block, A and b are built with batched matmuls
(`_normal_equations`) and solved by a batched Cholesky factorization or a few warm-started
conjugate-gradient steps (`_solve_side`). Each chunk is capped at `max_chunk_elements` padded
elements, which bounds memory. The design vectors and the unobserved terms
(`_design_and_offsets`, `_unobserved_terms`) are the fused kernel's inputs too.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from walsrec.models.wals_config import WALSConfig
from walsrec.tensorflow_import import import_tensorflow

tf = import_tensorflow()  # without the start-up lines TensorFlow prints to stderr


def _design_and_offsets(free: tf.Tensor, use_biases: bool) -> tuple[tf.Tensor, tf.Tensor]:
    """Fixed side's design vectors q and prediction offsets o for the other side's solve.

    `free` holds the solved part of each row: [factors] or [factors, bias]. With biases the
    design is [factors, 1] (the 1 multiplies the solved row's bias) and the offset is the bias.
    """
    if not use_biases:
        return free, tf.zeros(tf.shape(free)[:1], free.dtype)
    ones = tf.ones_like(free[:, -1:])
    return tf.concat([free[:, :-1], ones], axis=1), free[:, -1]


def _unobserved_terms(
    design: tf.Tensor, offsets: tf.Tensor, unobserved_weight: float
) -> tuple[tf.Tensor, tf.Tensor]:
    """unobserved_weight * Q^T Q and unobserved_weight * Q^T o, shared by all rows of a side."""
    gram = tf.matmul(design, design, transpose_a=True)
    offset_term = tf.linalg.matvec(design, offsets, transpose_a=True)
    return unobserved_weight * gram, unobserved_weight * offset_term


def _normal_equations(
    design: tf.Tensor,
    offsets: tf.Tensor,
    unobserved_gram: tf.Tensor,
    unobserved_offset_term: tf.Tensor,
    indices: tf.Tensor,
    extra: tf.Tensor,
    weighted_target: tf.Tensor,
    row_regularization: tf.Tensor,
) -> tuple[tf.Tensor, tf.Tensor]:
    """A [rows, d, d] and b [rows, d] of a chunk; padded entries have extra = c*t = 0."""
    observed = tf.gather(design, indices)  # [rows, max_len, d]
    lhs = tf.matmul(observed * extra[..., tf.newaxis], observed, transpose_a=True)
    dimension = tf.shape(design)[1]
    identity = tf.eye(dimension, dtype=design.dtype)
    lhs += unobserved_gram + row_regularization[:, tf.newaxis, tf.newaxis] * identity
    # sum_obs (c t - (c - w0) o_j) q_j - w0 Q^T o; o = 0 without biases.
    coefficients = weighted_target - extra * tf.gather(offsets, indices)
    rhs = tf.linalg.matvec(observed, coefficients, transpose_a=True) - unobserved_offset_term
    return lhs, rhs


@functools.cache
def _cg_chunk_solver(steps: int, jit_compile: bool) -> Callable[..., tf.Tensor]:
    """Conjugate-gradient solve of a chunk of rows, warm-started, without forming A.

    A v = unobserved_gram v + sum_obs extra_j (q_j . v) q_j + reg v needs only the gathered
    design rows q_j, read twice per step by batched matrix-vector products. The first residual
    b - A x0 = sum_obs (c t - extra (o_j + q_j . x0)) q_j - w0 Q^T o - (gram + reg) x0 takes two
    passes as well, so `steps` steps read the gathered block 2 * (steps + 1) times. XLA compiles
    the whole chunk into one call, once per chunk shape (a few dozen per side).

    A is positive definite, so p . A p > 0 until a row has converged exactly; the divisions
    return 0 there (divide_no_nan), which freezes that row instead of producing NaN.
    """

    @tf.function(jit_compile=jit_compile, autograph=False)
    def solve(
        design: tf.Tensor,  # [n_other, d]
        offsets: tf.Tensor,  # [n_other]
        unobserved_gram: tf.Tensor,  # [d, d]
        unobserved_offset_term: tf.Tensor,  # [d]
        indices: tf.Tensor,  # [rows, length]
        extra: tf.Tensor,  # [rows, length]
        weighted_target: tf.Tensor,  # [rows, length]
        row_regularization: tf.Tensor,  # [rows]
        start: tf.Tensor,  # [rows, d] the previous solution
    ) -> tf.Tensor:
        observed = tf.gather(design, indices)
        regularization = row_regularization[:, tf.newaxis]

        def dense_part(vectors: tf.Tensor) -> tf.Tensor:
            return tf.matmul(vectors, unobserved_gram) + regularization * vectors

        def times_lhs(vectors: tf.Tensor) -> tf.Tensor:
            projections = tf.linalg.matvec(observed, vectors) * extra
            return tf.linalg.matvec(observed, projections, transpose_a=True) + dense_part(vectors)

        solution = start
        coefficients = weighted_target - extra * (
            tf.gather(offsets, indices) + tf.linalg.matvec(observed, solution)
        )
        residual = tf.linalg.matvec(observed, coefficients, transpose_a=True)
        residual -= unobserved_offset_term + dense_part(solution)
        direction = residual
        residual_norm = tf.reduce_sum(residual * residual, axis=-1, keepdims=True)
        for _ in range(steps):
            lhs_direction = times_lhs(direction)
            curvature = tf.reduce_sum(direction * lhs_direction, axis=-1, keepdims=True)
            step = tf.math.divide_no_nan(residual_norm, curvature)
            solution += step * direction
            residual -= step * lhs_direction
            new_norm = tf.reduce_sum(residual * residual, axis=-1, keepdims=True)
            direction = residual + tf.math.divide_no_nan(new_norm, residual_norm) * direction
            residual_norm = new_norm
        return solution

    return solve


@functools.cache
def _bucket_cholesky_solver(jit_compile: bool) -> Callable[..., tf.Tensor]:
    """The exact solve of a fixed-shape chunk: XLA builds A and b (one fused gather and one
    batched matmul), TensorFlow's own batched Cholesky factors them (several times faster on
    CPU than XLA's). `start` is unused: the signature matches the CG solver's."""
    normal_equations = tf.function(_normal_equations, jit_compile=jit_compile, autograph=False)

    @tf.function(autograph=False)
    def solve(*arguments: tf.Tensor) -> tf.Tensor:
        lhs, rhs = normal_equations(*arguments[:-1])
        cholesky = tf.linalg.cholesky(lhs)
        return tf.linalg.cholesky_solve(cholesky, rhs[..., tf.newaxis])[..., 0]

    return solve


@dataclass
class _Chunk:
    """One fixed-shape block of rows: entries padded to the bucket length, rows to a multiple
    of 8 (padding rows have no entries and regularization 1, and their solutions are dropped)."""

    rows: tf.Tensor  # int32 [rows] row index of each block row (0 for padding rows)
    indices: tf.Tensor  # int32 [rows, length] the other side's index of each entry
    extra: tf.Tensor  # [rows, length] f(r); 0 on padding
    weighted_target: tf.Tensor  # [rows, length] c * t; 0 on padding
    row_regularization: tf.Tensor  # [rows]


@dataclass
class _SidePlan:
    """The padded chunks of one side (users or items), built once before the first epoch."""

    chunks: list[_Chunk]
    # Solutions come out in chunk order (with padding rows); this gathers them into row order.
    chunk_order_to_rows: tf.Tensor
    # bool [n_rows, 1]: the row has entries. Rows without are set to exactly zero.
    has_entries: tf.Tensor
    padded_entries: int
    entries: int


# Padded lengths are 8 * sqrt(2)^k rounded up to a multiple of 8: a row is padded by at most
# ~41% (23% on average over power-law lengths), with two compiled shapes per doubling.
_SMALLEST_PADDED_LENGTH = 8


def _length_ladder(longest: int) -> np.ndarray:
    """The padded lengths 8, 16, 24, 32, 48, 64, 96, 128, 184, ... up to >= longest."""
    ladder = [_SMALLEST_PADDED_LENGTH]
    power = 1
    while ladder[-1] < longest:
        length = 8 * math.ceil(_SMALLEST_PADDED_LENGTH * 2 ** (power / 2) / 8)
        if length > ladder[-1]:
            ladder.append(length)
        power += 1
    return np.array(ladder, dtype=np.int64)


def _plan_side(
    indptr: np.ndarray,
    other_indices: np.ndarray,
    extra: np.ndarray,
    weighted_target: np.ndarray,
    row_regularization: np.ndarray,
    dimension: int,
    max_chunk_elements: int,
    dtype: tf.DType,
    solver: str,
    entry_order: np.ndarray | None = None,
) -> _SidePlan:
    """Bucket the rows of one side by padded length and cut each bucket into fixed-shape chunks.

    `indptr` and `other_indices` describe this side's rows; `extra` and `weighted_target` are
    read at `entry_order[k]` for entry k of those rows (the item side reads CSR-ordered values
    through the CSR-to-CSC permutation instead of a permuted copy of each array).
    """
    lengths = np.diff(indptr)
    ladder = _length_ladder(int(lengths.max(initial=1)))
    bucket_of_row = np.searchsorted(ladder, lengths)
    chunks = []
    block_offset = 0  # block rows (with padding rows) before this bucket's
    position_of_row = np.empty(lengths.size, dtype=np.int64)
    padded_entries = 0
    for bucket in np.unique(bucket_of_row):
        bucket_rows = np.flatnonzero(bucket_of_row == bucket)
        padded_length = int(ladder[bucket])
        # The exact solver also holds a [rows, d, d] matrix per chunk: a row costs
        # max(length, d) elements of the budget; CG never forms it.
        row_cost = padded_length if solver == "cg" else max(padded_length, dimension)
        max_rows = max(1, max_chunk_elements // row_cost)
        n_chunks = -(-bucket_rows.size // max_rows)
        chunk_rows = -(-bucket_rows.size // n_chunks)
        if max_rows >= 8:  # a multiple of 8 rows (aligned), within the budget
            chunk_rows = min(8 * -(-chunk_rows // 8), max_rows - max_rows % 8)
            n_chunks = -(-bucket_rows.size // chunk_rows)
        block_rows = np.full(n_chunks * chunk_rows, -1, dtype=np.int64)
        block_rows[: bucket_rows.size] = bucket_rows
        position_of_row[bucket_rows] = block_offset + np.arange(bucket_rows.size)
        block_offset += block_rows.size
        padded = _padded_block(
            block_rows,
            indptr,
            other_indices,
            extra,
            weighted_target,
            padded_length,
            dtype.as_numpy_dtype,
            entry_order,
        )
        regularization = np.ones(block_rows.size)
        regularization[: bucket_rows.size] = row_regularization[bucket_rows]
        padded_entries += block_rows.size * padded_length
        for first in range(0, block_rows.size, chunk_rows):
            part = slice(first, first + chunk_rows)
            chunks.append(
                _Chunk(
                    rows=tf.constant(np.maximum(block_rows[part], 0).astype(np.int32)),
                    indices=tf.constant(padded[0][part]),
                    extra=tf.constant(padded[1][part], dtype),
                    weighted_target=tf.constant(padded[2][part], dtype),
                    row_regularization=tf.constant(regularization[part], dtype),
                )
            )
    return _SidePlan(
        chunks=chunks,
        chunk_order_to_rows=tf.constant(position_of_row.astype(np.int32)),
        has_entries=tf.constant((lengths > 0)[:, np.newaxis]),
        padded_entries=padded_entries,
        entries=int(indptr[-1]),
    )


def _padded_block(
    block_rows: np.ndarray,
    indptr: np.ndarray,
    other_indices: np.ndarray,
    extra: np.ndarray,
    weighted_target: np.ndarray,
    padded_length: int,
    float_dtype: type,
    entry_order: np.ndarray | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[rows, padded_length] indices, extra and c*t of some rows (-1: a padding row).

    Entry k of row r goes to [r, k - start_r]; padding keeps index 0 with zero weights, so it
    adds nothing to A or b.
    """
    real = block_rows >= 0
    row_lengths = np.where(real, np.diff(indptr)[np.maximum(block_rows, 0)], 0)
    block_row = np.repeat(np.arange(block_rows.size), row_lengths)
    offsets = np.repeat(np.cumsum(row_lengths) - row_lengths, row_lengths)
    position = np.arange(block_row.size) - offsets
    source = np.repeat(indptr[np.maximum(block_rows, 0)], row_lengths) + position
    shape = (block_rows.size, padded_length)
    padded_indices = np.zeros(shape, dtype=np.int32)
    padded_extra = np.zeros(shape, dtype=float_dtype)
    padded_weighted_target = np.zeros(shape, dtype=float_dtype)
    padded_indices[block_row, position] = other_indices[source]
    if entry_order is not None:
        source = entry_order[source]
    padded_extra[block_row, position] = extra[source]
    padded_weighted_target[block_row, position] = weighted_target[source]
    return padded_indices, padded_extra, padded_weighted_target


def _solve_side(
    plan: _SidePlan,
    other_free: tf.Tensor,
    previous: tf.Tensor,
    config: WALSConfig,
    pool: ThreadPoolExecutor | None,
) -> tf.Tensor:
    """Solve every row of one side with the other side's factors fixed: [n_rows, d].

    `previous` (this side's current factors) warm-starts CG. With a pool, chunks are solved
    concurrently, each op single-threaded: small batched ops scale better across chunks than
    inside one op.
    """
    design, offsets = _design_and_offsets(other_free, config.use_biases)
    gram, offset_term = _unobserved_terms(design, offsets, config.unobserved_weight)
    if config.solver == "cg":
        solve = _cg_chunk_solver(config.cg_steps, config.jit_compile)
    else:
        solve = _bucket_cholesky_solver(config.jit_compile)

    def solve_chunk(chunk: _Chunk) -> tf.Tensor:
        start = tf.gather(previous, chunk.rows) if config.solver == "cg" else previous[:1]
        return solve(
            design,
            offsets,
            gram,
            offset_term,
            chunk.indices,
            chunk.extra,
            chunk.weighted_target,
            chunk.row_regularization,
            start,
        )

    if pool is None:
        solutions = [solve_chunk(chunk) for chunk in plan.chunks]
    else:
        solutions = list(pool.map(solve_chunk, plan.chunks))
    solution = tf.gather(tf.concat(solutions, axis=0), plan.chunk_order_to_rows)
    # A row without entries has no information: exactly zero, whatever the solver (CG would
    # keep part of its warm start, the exact solve with biases a bias-only fit).
    return tf.where(plan.has_entries, solution, tf.zeros_like(solution))
