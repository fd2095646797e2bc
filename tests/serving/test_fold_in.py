"""The service's NumPy fold-in equals the training solver's `WALSModel.fold_in`."""

from __future__ import annotations

import numpy as np
import pytest

from serving.fold_in import FoldIn
from walsrec.wals import WALSConfig, WALSModel

CASES = [
    {"observed_weighting": "linear", "alpha": 10.0},
    {"observed_weighting": "constant", "alpha": 3.0, "unobserved_weight": 0.5},
    {"observed_weighting": "log", "alpha": 2.0, "epsilon": 0.5},
    {"observed_weighting": "item_power", "alpha": 4.0, "item_weight_exponent": 0.3},
    {"mode": "explicit", "use_biases": True, "unobserved_weight": 0.0, "alpha": 1.0},
    {"mode": "explicit", "use_biases": True, "regularization_scaling": "count"},
    {"use_biases": True, "dtype": "float64"},
]


@pytest.mark.parametrize("overrides", CASES, ids=lambda c: "-".join(map(str, c.values())))
def test_numpy_fold_in_matches_the_training_solver(overrides: dict) -> None:
    rng = np.random.default_rng(7)
    n_items, n_factors = 300, 12
    config = WALSConfig.from_dict({"n_factors": n_factors, "regularization": 0.5, **overrides})
    use_biases = config.use_biases
    dtype = np.dtype(config.dtype)
    model = WALSModel(
        config=config,
        user_factors=np.zeros((1, n_factors), dtype),
        item_factors=rng.normal(0, 0.3, (n_items, n_factors)).astype(dtype),
        user_bias=np.zeros(1, dtype) if use_biases else None,
        item_bias=rng.normal(0, 0.2, n_items).astype(dtype) if use_biases else None,
        global_mean=3.5 if config.mode == "explicit" else 0.0,
        item_counts=rng.integers(0, 50, n_items).astype(np.float64),
    )
    fold_in = FoldIn(
        config.to_dict(), model.item_factors, model.item_bias, model.global_mean, model.item_counts
    )
    # Repeated items (summed), a zero rating (dropped), and a cold user with no items.
    items = np.array([5, 17, 17, 250, 3, 99])
    ratings = np.array([4.0, 1.0, 2.0, 5.0, 0.0, 3.5])
    for args in [(items, ratings), (items, None), (np.array([], dtype=np.int64), None)]:
        expected, expected_bias = model.fold_in(*args)
        factors, bias = fold_in.solve(*args)
        np.testing.assert_allclose(factors, expected, rtol=1e-5, atol=1e-5)
        assert bias == pytest.approx(expected_bias, abs=1e-5)
