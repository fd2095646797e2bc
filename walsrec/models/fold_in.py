"""Fold-in in NumPy: the same least-squares solve as `walsrec.models.wals`, without TensorFlow.

The one inference-time fold-in: the model class (`RecommenderModel.recommend(...,
recalculate_user=True)`, `partial_fit_users` / `partial_fit_items`), batch inference and the
service all solve new or changed rows here. `walsrec.models.wals.WALSModel.fold_in` is the
reference: it runs one user through the training's TensorFlow solver. Importing TensorFlow costs
seconds and hundreds of MiB per server worker, and one 64 x 64 solve through TensorFlow's graph
machinery costs more than the solve itself, so inference uses this NumPy transcription
instead. The defaults of a config key missing from a model's saved config are
`walsrec.models.wals_config.WALSConfig`'s. tests/serving/test_fold_in.py checks that it
returns the same factors as `WALSModel.fold_in` (to 1e-5) for every weighting, mode and bias
setting; a change to the solve in walsrec/models/wals.py must be mirrored here, and that test fails
until it is.

For a user with observed items O (duplicates summed, zeros dropped), confidence
c_i = unobserved_weight + f(r_i) and target t_i, with the item design vectors q_i ([y_i] or
[y_i, 1] with biases) and offsets o_i (0 or b_i):

    A = unobserved_weight * Q^T Q + sum_{i in O} f(r_i) q_i q_i^T + reg I
    b = sum_{i in O} (c_i t_i - f(r_i) o_i) q_i - unobserved_weight * Q^T o

and the user's [x_u] or [x_u, b_u] is the solution of A z = b (Cholesky; A is positive definite
because reg > 0; a least-squares solve when rounding makes the Cholesky fail).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec.errors import DataError
from walsrec.lazy import LazyModule
from walsrec.models.wals_config import OBSERVED_WEIGHTINGS, WALSConfig

# scipy.linalg on first use: 0.15 s of import that a run served from the cache never needs.
linalg = LazyModule("scipy.linalg")

__all__ = ["FoldIn"]

_DEFAULTS = WALSConfig()


class FoldIn:
    """Solves new users against fixed item factors, with the training's weights.

    The item-side terms (Q^T Q and Q^T o) are computed once here, so a call costs
    O(|O| d^2 + d^3) whatever the catalog size.

    Args:
        config: the WALS config the model was trained with (`RecommenderModel.config`).
        item_factors: float [n_items, n_factors].
        item_bias: float [n_items], or None for a model without biases.
        global_mean: the model's global mean (explicit mode's targets are rating - mean).
        item_counts: observed entries per item in training; used by the item_power weighting.
        solving_items: the rows solved are items against fixed user factors (the arguments
            named item_* are then the users'): item_power weighs an entry by the solved item's
            own number of observed entries, as training does.
    """

    def __init__(
        self,
        config: Mapping[str, Any],
        item_factors: np.ndarray,
        item_bias: np.ndarray | None,
        global_mean: float,
        item_counts: np.ndarray | None,
        *,
        solving_items: bool = False,
    ) -> None:
        def setting(key: str) -> Any:
            return config.get(key, getattr(_DEFAULTS, key))

        self.mode = str(setting("mode"))
        self.weighting = str(setting("observed_weighting"))
        if self.weighting not in OBSERVED_WEIGHTINGS:
            raise DataError(f"model config: unknown observed_weighting {self.weighting!r}")
        self.alpha = float(setting("alpha"))
        self.epsilon = float(setting("epsilon"))
        self.item_weight_exponent = float(setting("item_weight_exponent"))
        self.unobserved_weight = float(setting("unobserved_weight"))
        self.regularization = float(setting("regularization"))
        self.count_scaling = setting("regularization_scaling") == "count"
        self.solving_items = solving_items
        self.use_biases = item_bias is not None
        self.n_factors = int(item_factors.shape[1])
        self.global_mean = float(global_mean)
        self.item_counts = None if item_counts is None else np.asarray(item_counts, np.float64)
        factors = np.asarray(item_factors, dtype=np.float64)
        if self.use_biases:
            self.design = np.hstack([factors, np.ones((factors.shape[0], 1))])
            self.offsets = np.asarray(item_bias, dtype=np.float64)
        else:
            self.design = factors
            self.offsets = np.zeros(factors.shape[0])
        self.gram = self.unobserved_weight * (self.design.T @ self.design)
        self.offset_term = self.unobserved_weight * (self.design.T @ self.offsets)

    def normal_equations(
        self, items: np.ndarray, values: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The row's system A z = b (see the module docstring) and the terms `explain` reads.

        Args:
            items: int [n] item indices (valid ones; may be empty, repeated).
            values: float [n] ratings or counts; None means 1.0 each.

        Returns:
            (A [d, d], b [d], observed [m] the distinct observed items, coefficients [m]),
            float64, with b = design[observed]^T coefficients - offset_term.

        Raises:
            DataError: values negative, non-finite or not one per item.
        """
        items = np.asarray(items, dtype=np.int64).reshape(-1)
        if values is None:
            values = np.ones(items.shape, dtype=np.float64)
        values = np.asarray(values, dtype=np.float64).reshape(-1)
        if values.shape != items.shape:
            raise DataError(f"got {values.size} values for {items.size} items")
        if not np.all(np.isfinite(values)):
            raise DataError("values must be finite numbers")
        if values.size and values.min() < 0:
            raise DataError("values must be >= 0 (ratings or counts)")
        # Canonical row, as training builds it: duplicates summed, zeros dropped, sorted.
        observed, inverse = np.unique(items, return_inverse=True)
        summed = np.bincount(inverse.reshape(-1), weights=values, minlength=observed.size)
        keep = summed != 0
        observed, summed = observed[keep], summed[keep]

        extra = self._extra_confidence(summed, observed)
        targets = np.ones_like(summed) if self.mode == "implicit" else summed - self.global_mean
        weighted_target = (self.unobserved_weight + extra) * targets
        regularization = self.regularization
        if self.count_scaling:
            regularization *= max(observed.size, 1)

        design = self.design[observed]
        lhs = self.gram + (design * extra[:, np.newaxis]).T @ design
        lhs[np.diag_indices_from(lhs)] += regularization
        coefficients = weighted_target - extra * self.offsets[observed]
        rhs = design.T @ coefficients - self.offset_term
        return lhs, rhs, observed, coefficients

    def solve(
        self, items: np.ndarray, values: np.ndarray | None = None
    ) -> tuple[np.ndarray, float]:
        """Factors and bias of a user who interacted with `items` (with `values`).

        A user with no (nonzero) interactions gets exactly zero factors and bias, as training
        gives a row without entries.

        Args:
            items: int [n] item indices (valid ones; may be empty, repeated).
            values: float [n] ratings or counts; None means 1.0 each.

        Returns:
            (float32 [n_factors] factors, bias), the bias 0.0 for a model without biases.

        Raises:
            DataError: values negative, non-finite or not one per item.
        """
        lhs, rhs, observed, _ = self.normal_equations(items, values)
        if observed.size == 0:  # no information: zero, as training gives a row without entries
            return np.zeros(self.n_factors, dtype=np.float32), 0.0
        try:
            solution = linalg.cho_solve(linalg.cho_factor(lhs, lower=True), rhs)
        except np.linalg.LinAlgError:
            # Positive definite in exact arithmetic, but huge confidences (ratings near 1e20)
            # can swamp the regularization in float64: an SVD least-squares solve still works.
            solution = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
        if not np.all(np.isfinite(solution)):
            raise DataError("fold-in produced non-finite factors (the model is degenerate)")
        if self.use_biases:
            return solution[: self.n_factors].astype(np.float32), float(solution[self.n_factors])
        return solution.astype(np.float32), 0.0

    def solve_rows(self, rows: sp.spmatrix) -> tuple[np.ndarray, np.ndarray]:
        """Fold in many rows at once: row r of `rows` holds one user's values by item index.

        Args:
            rows: sparse [n_rows, n_items] ratings or counts (stored zeros are unobserved).

        Returns:
            (float32 [n_rows, n_factors] factors, float32 [n_rows] biases, zeros without
            biases): each row as `solve` returns it.
        """
        rows = sp.csr_matrix(rows)
        if rows.ndim != 2 or rows.shape[1] != self.design.shape[0]:
            raise DataError(
                f"fold-in rows have {rows.shape[1]} columns, the model has "
                f"{self.design.shape[0]} items"
            )
        factors = np.zeros((rows.shape[0], self.n_factors), dtype=np.float32)
        biases = np.zeros(rows.shape[0], dtype=np.float32)
        for row in range(rows.shape[0]):
            start, stop = rows.indptr[row], rows.indptr[row + 1]
            factors[row], biases[row] = self.solve(rows.indices[start:stop], rows.data[start:stop])
        return factors, biases

    def _extra_confidence(self, values: np.ndarray, items: np.ndarray) -> np.ndarray:
        """f(r) = c - unobserved_weight per observed entry (see WALSConfig.observed_weighting)."""
        if self.weighting == "constant":
            return np.full(values.shape, self.alpha)
        if self.weighting == "linear":
            return self.alpha * values
        if self.weighting == "proportional":
            return self.alpha * values - self.unobserved_weight
        if self.weighting == "log":
            return self.alpha * np.log1p(values / self.epsilon)
        if self.solving_items:  # the solved item's own number of observed entries
            counts = np.full(values.shape, max(float(values.size), 1.0))
        elif self.item_counts is None:
            raise DataError("the item_power weighting needs the model's item counts")
        else:
            counts = np.maximum(self.item_counts[items], 1.0)
        return self.alpha * counts ** (-self.item_weight_exponent)
