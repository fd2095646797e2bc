"""WALS solver: agreement with a dense NumPy reference, recovery, ranking, errors, fold-in."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
import scipy.sparse as sp
import tensorflow as tf
from pydantic import ValidationError

from walsrec import native
from walsrec.errors import ConfigError, DataError, WalsrecError
from walsrec.models.wals import (
    EpochStats,
    WALSConfig,
    WALSModel,
    configure_threads,
    train_wals,
)
from walsrec.models.wals_graph import _length_ladder, _plan_side


def random_ratings(
    n_users: int, n_items: int, density: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Dense integer ratings 1..5 and the mask of the observed ones (every row/column hit)."""
    rng = np.random.default_rng(seed)
    mask = rng.random((n_users, n_items)) < density
    mask[np.arange(n_users), rng.integers(0, n_items, n_users)] = True
    mask[rng.integers(0, n_users, n_items), np.arange(n_items)] = True
    ratings = rng.integers(1, 6, size=(n_users, n_items)).astype(np.float64)
    return np.where(mask, ratings, 0.0), mask


def reference_wals(
    ratings: np.ndarray, mask: np.ndarray, config: WALSConfig, epochs: int
) -> dict[str, object]:
    """Dense float64 WALS written from the objective, one np.linalg.solve per row.

    Every entry gets its confidence explicitly (unobserved_weight off the mask), so this shares
    none of the sparse trick of the implementation, only the initialization recipe.
    """
    n_users, n_items = ratings.shape
    n_factors = config.n_factors
    rng = np.random.default_rng(config.seed)
    scale = config.init_scale / np.sqrt(n_factors)
    users = rng.normal(0.0, scale, size=(n_users, n_factors))
    items = rng.normal(0.0, scale, size=(n_items, n_factors))
    user_bias = np.zeros(n_users)
    item_bias = np.zeros(n_items)
    biases = config.use_biases

    if config.observed_weighting == "linear":
        extra = config.alpha * ratings
    elif config.observed_weighting == "proportional":
        extra = config.alpha * ratings - config.unobserved_weight
    elif config.observed_weighting == "constant":
        extra = np.full(ratings.shape, config.alpha)
    elif config.observed_weighting == "log":
        extra = config.alpha * np.log(1.0 + ratings / config.epsilon)
    else:
        extra = np.broadcast_to(
            config.alpha * (1.0 / mask.sum(axis=0)) ** config.item_weight_exponent, ratings.shape
        )
    confidence = np.where(mask, config.unobserved_weight + extra, config.unobserved_weight)
    global_mean = ratings[mask].mean() if biases and config.mode == "explicit" else 0.0
    observed_target = 1.0 if config.mode == "implicit" else ratings - global_mean
    targets = np.where(mask, observed_target, 0.0)

    def row_reg(counts: np.ndarray) -> np.ndarray:
        if config.regularization_scaling == "count":
            return config.regularization * np.maximum(counts, 1)
        return np.full(counts.shape, config.regularization)

    reg_users, reg_items = row_reg(mask.sum(axis=1)), row_reg(mask.sum(axis=0))

    def solve_rows(other, other_bias, weights, row_targets, regs):
        # Minimize sum_j w_j (t_j - other_bias_j - z . q_j)^2 + reg |z|^2 per row.
        design = np.hstack([other, np.ones((len(other), 1))]) if biases else other
        offsets = other_bias if biases else 0.0
        solved = []
        for w, t, reg in zip(weights, row_targets, regs, strict=True):
            lhs = design.T @ (w[:, None] * design) + reg * np.eye(design.shape[1])
            solved.append(np.linalg.solve(lhs, design.T @ (w * (t - offsets))))
        solved = np.array(solved)
        return (solved[:, :-1], solved[:, -1]) if biases else (solved, None)

    losses = []
    for _ in range(epochs):
        users, new_user_bias = solve_rows(items, item_bias, confidence, targets, reg_users)
        user_bias = new_user_bias if biases else user_bias
        items, new_item_bias = solve_rows(users, user_bias, confidence.T, targets.T, reg_items)
        item_bias = new_item_bias if biases else item_bias
        predictions = users @ items.T + user_bias[:, None] + item_bias[None, :]
        penalty = reg_users @ (np.sum(users**2, axis=1) + user_bias**2)
        penalty += reg_items @ (np.sum(items**2, axis=1) + item_bias**2)
        losses.append(float(np.sum(confidence * (targets - predictions) ** 2) + penalty))
    return {
        "users": users,
        "items": items,
        "user_bias": user_bias,
        "item_bias": item_bias,
        "global_mean": global_mean,
        "losses": losses,
    }


REFERENCE_CASES = {
    "implicit-linear-count": dict(
        mode="implicit",
        observed_weighting="linear",
        alpha=2.0,
        regularization=0.1,
        regularization_scaling="count",
    ),
    "explicit-biases": dict(
        mode="explicit",
        use_biases=True,
        observed_weighting="constant",
        alpha=1.0,
        unobserved_weight=0.2,
        regularization=0.5,
    ),
    "implicit-log": dict(mode="implicit", observed_weighting="log", alpha=3.0, epsilon=2.0),
    "implicit-item-power": dict(mode="implicit", observed_weighting="item_power", alpha=5.0),
    # Total confidence alpha * r: a rating of 1 weighs 0.6, less than unobserved (1.0).
    "implicit-proportional": dict(mode="implicit", observed_weighting="proportional", alpha=0.6),
}


@pytest.mark.parametrize("kernel", ["fused", "graph"])
@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_agrees_with_dense_numpy_reference(case: str, kernel: str) -> None:
    ratings, mask = random_ratings(30, 20, density=0.25, seed=3)
    matrix = sp.csr_matrix(ratings, dtype=np.float32)
    config64 = WALSConfig(
        n_factors=5,
        epochs=3,
        init_scale=1.0,
        dtype="float64",
        kernel=kernel,
        **REFERENCE_CASES[case],
    )
    expected = reference_wals(ratings, mask, config64, epochs=3)

    model = train_wals(matrix, config64)
    tolerance = dict(rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(model.user_factors, expected["users"], **tolerance)
    np.testing.assert_allclose(model.item_factors, expected["items"], **tolerance)
    np.testing.assert_allclose([h.loss for h in model.history], expected["losses"], rtol=1e-6)
    assert model.global_mean == pytest.approx(expected["global_mean"])
    if config64.use_biases:
        np.testing.assert_allclose(model.user_bias, expected["user_bias"], **tolerance)
        np.testing.assert_allclose(model.item_bias, expected["item_bias"], **tolerance)
    else:
        assert model.user_bias is None and model.item_bias is None

    config32 = WALSConfig.from_dict({**config64.to_dict(), "dtype": "float32"})
    model32 = train_wals(matrix, config32)
    np.testing.assert_allclose(model32.user_factors, expected["users"], rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(model32.item_factors, expected["items"], rtol=1e-3, atol=1e-3)


def test_recovers_planted_low_rank_matrix() -> None:
    rng = np.random.default_rng(0)
    n_users, n_items, rank = 200, 150, 4
    # A constant first factor keeps every entry positive (ratings must be >= 0) at rank 4.
    users = np.hstack([np.full((n_users, 1), 4.0), rng.normal(size=(n_users, rank - 1))])
    items = np.hstack([np.full((n_items, 1), 4.0), rng.normal(size=(n_items, rank - 1))])
    truth = users @ items.T
    assert truth.min() > 0
    observed = rng.random(truth.shape) < 0.4
    matrix = sp.csr_matrix(np.where(observed, truth, 0.0), dtype=np.float32)
    config = WALSConfig(
        n_factors=rank,
        mode="explicit",
        unobserved_weight=0.0,
        observed_weighting="constant",
        alpha=1.0,
        regularization=1e-4,
        init_scale=1.0,
        epochs=40,
    )
    model = train_wals(matrix, config)

    held_out_users, held_out_items = np.nonzero(~observed)
    errors = model.predict(held_out_users, held_out_items) - truth[~observed]
    rmse = float(np.sqrt(np.mean(errors**2)))
    assert rmse < 0.05 * truth.std(), (rmse, truth.std())
    losses = np.array([h.loss for h in model.history])
    assert np.all(np.diff(losses) <= 1e-5 * losses[:-1]), losses
    assert losses[-1] < 1e-3 * losses[0]


def test_checkerboard_withheld_item_ranks_first() -> None:
    n_users, n_items = 20, 16
    user_group = np.arange(n_users) % 2
    item_group = np.arange(n_items) % 2
    liked = (user_group[:, None] == item_group[None, :]).astype(np.float32)
    withheld_user, withheld_item = 0, 4  # both in group 0
    liked[withheld_user, withheld_item] = 0.0
    model = train_wals(sp.csr_matrix(liked), WALSConfig(n_factors=4, epochs=10))

    scores = model.score_users(np.array([withheld_user]))[0]
    unseen = np.flatnonzero(liked[withheld_user] == 0)
    assert unseen[np.argmax(scores[unseen])] == withheld_item
    assert scores.shape == (n_items,) and scores.dtype == np.float32


def test_deterministic_for_same_data_and_config() -> None:
    ratings, _ = random_ratings(40, 30, density=0.2, seed=1)
    matrix = sp.csr_matrix(ratings, dtype=np.float32)
    config = WALSConfig(n_factors=8, epochs=4, seed=7)
    first, second = train_wals(matrix, config), train_wals(matrix, config)
    assert np.array_equal(first.user_factors, second.user_factors)
    assert np.array_equal(first.item_factors, second.item_factors)
    other_seed = train_wals(matrix, WALSConfig(n_factors=8, epochs=4, seed=8))
    assert not np.allclose(first.user_factors, other_seed.user_factors)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
def test_chunking_does_not_change_the_result(solver: str) -> None:
    ratings, _ = random_ratings(50, 40, density=0.3, seed=2)
    matrix = sp.csr_matrix(ratings, dtype=np.float32)
    for extra in ({}, {"use_biases": True, "mode": "explicit", "regularization_scaling": "count"}):
        # CG's few steps on these ill-conditioned float32 systems amplify rounding (sums in
        # another order) to ~1e-2; in float64 any chunking gives the same result.
        extra = {
            **extra,
            "solver": solver,
            "dtype": "float32" if solver == "cholesky" else "float64",
            "kernel": "graph",  # chunks are the graph kernel's; the fused one has none
        }
        default = train_wals(matrix, WALSConfig(n_factors=6, epochs=3, **extra))
        # One row per chunk and sequential: dozens of solver calls per half-step, no threads.
        tiny = train_wals(
            matrix,
            WALSConfig(n_factors=6, epochs=3, max_chunk_elements=1, parallel_chunks=1, **extra),
        )
        tolerance = dict(rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(tiny.user_factors, default.user_factors, **tolerance)
        np.testing.assert_allclose(tiny.item_factors, default.item_factors, **tolerance)
        if default.user_bias is not None:
            np.testing.assert_allclose(tiny.user_bias, default.user_bias, **tolerance)


FOLD_IN_CASES = {
    "implicit": dict(),
    "explicit-biases": dict(
        mode="explicit", use_biases=True, unobserved_weight=0.1, regularization_scaling="count"
    ),
    "explicit-observed-only": dict(
        mode="explicit", use_biases=True, unobserved_weight=0.0, alpha=1.0
    ),
    "item-power": dict(observed_weighting="item_power", alpha=4.0, item_weight_exponent=0.3),
    "proportional": dict(observed_weighting="proportional", alpha=0.6),
    "constant": dict(observed_weighting="constant", alpha=3.0, unobserved_weight=0.5),
    "log": dict(observed_weighting="log", alpha=2.0, epsilon=0.5),
    "biases-float64": dict(use_biases=True, dtype="float64"),
}


@pytest.mark.parametrize("case", sorted(FOLD_IN_CASES))
def test_fold_in_is_the_training_user_solve(case: str) -> None:
    ratings, _ = random_ratings(40, 30, density=0.2, seed=4)
    matrix = sp.csr_matrix(ratings, dtype=np.float32)
    config = WALSConfig(n_factors=6, epochs=4, **FOLD_IN_CASES[case])
    snapshots: dict[int, WALSModel] = {}
    final = train_wals(
        matrix, config, callback=lambda epoch, model: snapshots.update({epoch: model})
    )

    # The last epoch solved users against the item factors after epoch 3: folding a user's row
    # into the epoch-3 model must reproduce the final user factors.
    before_last = snapshots[3]
    for user in (0, 7, 39):
        row = matrix[user]
        factors, bias = before_last.fold_in(row.indices, row.data)
        assert factors.shape == (6,) and factors.dtype == np.float32
        np.testing.assert_allclose(factors, final.user_factors[user], rtol=1e-5, atol=1e-5)
        if config.use_biases:
            assert bias == pytest.approx(float(final.user_bias[user]), abs=1e-5)
        else:
            assert bias == 0.0

    # Items are solved last in an epoch: folding an item's column in against the final user
    # factors (the item side, as partial_fit_items does) reproduces the final item factors.
    from walsrec.models.fold_in import FoldIn

    items = FoldIn(
        config.to_dict(),
        final.user_factors,
        final.user_bias,
        final.global_mean,
        None,
        solving_items=True,
    )
    columns = matrix.tocsc()
    for item in (0, 11, 29):
        column = columns[:, item]
        factors, bias = items.solve(column.indices, column.data)
        np.testing.assert_allclose(factors, final.item_factors[item], rtol=1e-5, atol=1e-5)
        if config.use_biases:
            assert bias == pytest.approx(float(final.item_bias[item]), abs=1e-5)


def test_fold_in_after_convergence_matches_trained_user() -> None:
    ratings, _ = random_ratings(40, 30, density=0.2, seed=5)
    matrix = sp.csr_matrix(ratings, dtype=np.float32)
    model = train_wals(matrix, WALSConfig(n_factors=4, epochs=100, alpha=1.0))
    row = matrix[3]
    factors, _ = model.fold_in(row.indices, row.data)
    # Near a fixed point of ALS, re-solving a user against the final items barely moves it.
    relative_change = np.linalg.norm(factors - model.user_factors[3]) / np.linalg.norm(factors)
    assert relative_change < 0.01
    # values=None means 1.0 per item; an empty history still gets a (cold-start) solve.
    implicit_factors, _ = model.fold_in(row.indices)
    assert np.all(np.isfinite(implicit_factors))
    cold, _ = model.fold_in(np.array([], dtype=np.int64))
    assert cold.shape == (4,)
    assert not cold.any()  # no items, no information: zero, as training gives such a row
    with pytest.raises(DataError, match="out of range"):
        model.fold_in(np.array([30]))
    with pytest.raises(DataError, match="negative"):
        model.fold_in(np.array([1]), np.array([-1.0]))


def test_biases_help_on_strong_user_offsets() -> None:
    rng = np.random.default_rng(6)
    n_users, n_items = 150, 120
    user_offset = rng.uniform(0.0, 4.0, n_users)
    item_offset = rng.uniform(0.0, 1.0, n_items)
    taste = rng.normal(size=(n_users, 2)) @ rng.normal(size=(n_items, 2)).T * 0.3
    truth = 1.0 + user_offset[:, None] + item_offset[None, :] + taste
    truth = np.maximum(truth + rng.normal(0.0, 0.1, truth.shape), 0.01)
    observed = rng.random(truth.shape) < 0.05  # ~6 ratings per user
    matrix = sp.csr_matrix(np.where(observed, truth, 0.0), dtype=np.float32)
    held_out = np.nonzero(~observed)

    def held_out_rmse(use_biases: bool) -> float:
        config = WALSConfig(
            n_factors=4,
            mode="explicit",
            unobserved_weight=0.0,
            observed_weighting="constant",
            alpha=1.0,
            regularization=0.1,
            regularization_scaling="count",
            use_biases=use_biases,
            epochs=10,
        )
        model = train_wals(matrix, config)
        return float(np.sqrt(np.mean((model.predict(*held_out) - truth[~observed]) ** 2)))

    with_biases, without = held_out_rmse(True), held_out_rmse(False)
    assert with_biases < 0.5 * without, (with_biases, without)


def test_history_logging_progress_and_early_stop(caplog: pytest.LogCaptureFixture) -> None:
    ratings, _ = random_ratings(20, 15, density=0.3, seed=8)
    matrix = sp.csr_matrix(ratings, dtype=np.float32)
    seen: list[int] = []

    def stop_after_two(epoch: int, model: WALSModel) -> bool:
        seen.append(epoch)
        assert len(model.history) == epoch
        return epoch == 2

    log = logging.getLogger("test_wals")
    with caplog.at_level(logging.INFO, logger="test_wals"):
        config = WALSConfig(n_factors=3, epochs=5)
        model = train_wals(matrix, config, progress=True, callback=stop_after_two, log=log)
    assert seen == [1, 2]
    assert [h.epoch for h in model.history] == [1, 2]
    assert all(isinstance(h, EpochStats) and h.seconds > 0 for h in model.history)
    assert sum("epoch 2/5" in record.getMessage() for record in caplog.records) == 1


@pytest.mark.parametrize("value", [0.0, -1.0])
def test_rejects_non_positive_regularization(value: float) -> None:
    with pytest.raises(
        ConfigError, match=r"wals.regularization: Input should be greater than 0, got -?[01]\.0"
    ):
        WALSConfig.from_dict({"regularization": value})
    with pytest.raises(ValidationError, match="regularization"):  # built directly: pydantic's
        WALSConfig(regularization=value)


def test_rejects_unknown_key_and_bad_choices() -> None:
    with pytest.raises(ConfigError, match=r"wals.n_factor: unknown key; did you mean n_factors"):
        WALSConfig.from_dict({"n_factor": 8})
    with pytest.raises(
        ConfigError, match=r"mode: Input should be 'implicit' or 'explicit', got 'x'"
    ):
        WALSConfig.from_dict({"mode": "x"})
    with pytest.raises(ConfigError, match="observed_weighting"):
        WALSConfig.from_dict({"observed_weighting": "sqrt"})
    with pytest.raises(ConfigError, match="n_factors: Input should be greater than or equal to 1"):
        WALSConfig.from_dict({"n_factors": 0})
    with pytest.raises(ConfigError, match="n_factors: Input should be a valid integer, got True"):
        WALSConfig.from_dict({"n_factors": True})
    with pytest.raises(ConfigError, match="unobserved_weight: Input should be greater than or"):
        WALSConfig.from_dict({"unobserved_weight": -0.5})
    with pytest.raises(ConfigError, match="dtype"):
        WALSConfig.from_dict({"dtype": "float16"})
    with pytest.raises(ConfigError, match="^wals: alpha and unobserved_weight are both 0"):
        WALSConfig.from_dict({"alpha": 0.0, "unobserved_weight": 0.0})
    config = WALSConfig()
    assert WALSConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValidationError, match="frozen"):
        config.epochs = 0  # a config is checked once, when built, and never changes


def test_config_takes_yaml_and_numpy_numbers_as_python_ones() -> None:
    """`regularization: 300` in YAML is the float 300.0 (so a saved config's JSON is the same
    as for 300.0); numpy's numbers (profile rules, tests) become Python's."""
    config = WALSConfig.from_dict(
        {"regularization": 300, "alpha": np.float32(2.0), "n_factors": np.int64(8)}
    )
    assert config.to_dict()["regularization"] == 300.0
    assert [type(config.regularization), type(config.alpha), type(config.n_factors)] == [
        float,
        float,
        int,
    ]
    assert json.dumps(config.to_dict()) == json.dumps(
        WALSConfig(regularization=300.0, alpha=2.0, n_factors=8).to_dict()
    )


@pytest.mark.parametrize(
    ("matrix", "message"),
    [
        (np.eye(3, dtype=np.float32), "scipy.sparse"),
        (sp.csr_matrix(np.array([[1.0, -2.0]], dtype=np.float32)), "negative"),
        (sp.csr_matrix(np.array([[1.0, np.nan]], dtype=np.float32)), "non-finite"),
        (sp.csr_matrix((3, 4), dtype=np.float32), "no observed entries"),
    ],
)
def test_rejects_unusable_matrices(matrix: object, message: str) -> None:
    with pytest.raises(DataError, match=message):
        train_wals(matrix, WALSConfig(n_factors=2, epochs=1))


def test_numerical_failure_is_one_clear_error() -> None:
    # float32 overflows in the normal equations; a failed Cholesky on CPU yields NaN, not a raise.
    matrix = sp.csr_matrix(np.array([[1e30, 1.0], [1.0, 0.0]], dtype=np.float32))
    with pytest.raises(WalsrecError, match="non-finite factors during epoch 1.*float64"):
        train_wals(matrix, WALSConfig(n_factors=2, epochs=2))


def test_predict_and_score_users_agree_and_check_indices() -> None:
    ratings, _ = random_ratings(20, 15, density=0.3, seed=9)
    model = train_wals(
        sp.csr_matrix(ratings, dtype=np.float32),
        WALSConfig(n_factors=3, epochs=2, mode="explicit", use_biases=True),
    )
    users, items = np.array([0, 5, 19]), np.array([14, 2, 0])
    np.testing.assert_allclose(
        model.predict(users, items), model.score_users(users)[np.arange(3), items], rtol=1e-5
    )
    assert model.global_mean == pytest.approx(ratings[ratings > 0].mean())
    with pytest.raises(DataError, match="users index 20 is out of range"):
        model.predict(np.array([20]), np.array([0]))
    with pytest.raises(DataError, match="same length"):
        model.predict(np.array([0, 1]), np.array([0]))


def test_configure_threads_too_late_only_warns(caplog: pytest.LogCaptureFixture) -> None:
    train_wals(sp.csr_matrix(np.eye(3, dtype=np.float32)), WALSConfig(n_factors=2, epochs=1))
    with caplog.at_level(logging.WARNING, logger="walsrec.models.wals"):
        configure_threads(intra_op=1, inter_op=1)
    # TensorFlow is running by now, so either the values already matched or it warned.
    changed = tf.config.threading.get_intra_op_parallelism_threads() == 1
    assert changed or "already started" in caplog.text
    with pytest.raises(ConfigError, match="intra_op"):
        configure_threads(intra_op=-1)


def test_plan_pads_rows_by_at_most_sqrt2_into_few_shapes() -> None:
    rng = np.random.default_rng(11)
    lengths = np.concatenate([[0], rng.zipf(1.5, 3000).clip(1, 5000)])
    indptr = np.concatenate([[0], np.cumsum(lengths)])
    entries = int(indptr[-1])
    other = rng.integers(0, 100, entries).astype(np.int32)
    ones = np.ones(entries)
    plan = _plan_side(indptr, other, ones, ones, np.ones(lengths.size), 8, 4096, tf.float32, "cg")
    shapes = {tuple(chunk.indices.shape) for chunk in plan.chunks}
    # One shape per length bucket: XLA compiles a few dozen programs, not one per chunk.
    assert len(shapes) <= len(_length_ladder(int(lengths.max())))
    assert len(plan.chunks) > len(shapes)
    for chunk in plan.chunks:
        rows, padded_length = chunk.indices.shape
        assert rows * padded_length <= max(4096, padded_length)
        real = chunk.extra.numpy() > 0
        row_lengths = real.sum(axis=1)
        # Every real row is padded by at most sqrt(2) (and at least to the smallest bucket).
        busy = row_lengths > 0
        assert np.all(padded_length <= np.maximum(np.ceil(np.sqrt(2) * row_lengths[busy]), 8) + 8)
    # Each row sits exactly once in the plan, and its entries keep their order.
    placed = np.asarray(plan.chunk_order_to_rows)
    assert np.unique(placed).size == lengths.size
    assert plan.padded_entries < 1.5 * entries


@pytest.mark.parametrize("case", ["implicit", "explicit-biases"])
def test_cg_with_enough_steps_is_the_exact_solve(case: str) -> None:
    ratings, _ = random_ratings(40, 30, density=0.25, seed=12)
    matrix = sp.csr_matrix(ratings, dtype=np.float32)
    extra = REFERENCE_CASES["explicit-biases"] if case != "implicit" else {}
    base = dict(n_factors=5, epochs=4, init_scale=1.0, dtype="float64", **extra)
    exact = train_wals(matrix, WALSConfig(**base))
    # CG is exact in d steps in exact arithmetic (d = 5 factors, + 1 with the bias).
    solved = train_wals(matrix, WALSConfig(solver="cg", cg_steps=8, **base))
    np.testing.assert_allclose(solved.user_factors, exact.user_factors, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(solved.item_factors, exact.item_factors, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(
        [h.loss for h in solved.history], [h.loss for h in exact.history], rtol=1e-9
    )
    # Too few steps to be exact, but never a NaN from a converged or empty row.
    rough = train_wals(matrix, WALSConfig(solver="cg", cg_steps=2, **base))
    assert not np.allclose(rough.user_factors, exact.user_factors, atol=1e-3)
    assert np.all(np.isfinite(rough.user_factors))


def test_cg_warm_start_converges_with_few_steps() -> None:
    ratings, _ = random_ratings(80, 60, density=0.15, seed=13)
    matrix = sp.csr_matrix(ratings, dtype=np.float32)
    base = dict(n_factors=8, alpha=2.0, regularization=0.5, dtype="float64")
    exact = train_wals(matrix, WALSConfig(epochs=40, **base))
    one_step = train_wals(matrix, WALSConfig(epochs=40, solver="cg", cg_steps=1, **base))
    losses = np.array([h.loss for h in one_step.history])
    # Warm-started CG minimizes each row's quadratic over a space holding the previous
    # solution, so the objective never increases, even with a single step per half-epoch...
    assert np.all(np.diff(losses) <= 1e-9 * losses[:-1]), losses
    # ...and the steps accumulate across epochs: one step per epoch reaches the exact
    # solver's objective, which one cold-started step could not.
    assert losses[-1] <= exact.history[-1].loss * 1.01, (losses[-1], exact.history[-1].loss)
    assert losses[-1] < 0.5 * losses[0]


def test_solver_keys_are_validated() -> None:
    with pytest.raises(ConfigError, match="solver: Input should be 'cholesky' or 'cg', got 'lu'"):
        WALSConfig.from_dict({"solver": "lu"})
    with pytest.raises(ConfigError, match="cg_steps: Input should be greater than or equal to 1"):
        WALSConfig.from_dict({"solver": "cg", "cg_steps": 0})
    with pytest.raises(ConfigError, match="jit_compile: Input should be a valid boolean"):
        WALSConfig.from_dict({"jit_compile": "yes"})
    with pytest.raises(ConfigError, match="parallel_chunks"):
        WALSConfig.from_dict({"parallel_chunks": -1})
    assert WALSConfig().solver == "cholesky"  # the exact solve stays the default


def test_no_jit_gives_the_same_result() -> None:
    ratings, _ = random_ratings(30, 25, density=0.3, seed=14)
    matrix = sp.csr_matrix(ratings, dtype=np.float32)
    for solver in ("cholesky", "cg"):
        config = WALSConfig(n_factors=4, epochs=3, solver=solver, dtype="float64", kernel="graph")
        compiled = train_wals(matrix, config)
        plain = train_wals(matrix, WALSConfig.from_dict({**config.to_dict(), "jit_compile": False}))
        np.testing.assert_allclose(plain.user_factors, compiled.user_factors, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("solver", ["cholesky", "cg"])
@pytest.mark.parametrize("case", sorted(REFERENCE_CASES))
def test_fused_kernel_solves_what_the_graph_kernel_solves(case: str, solver: str) -> None:
    # Empty rows and columns too: the fused kernel reads CSR rows of any length, including 0.
    ratings, _ = random_ratings(60, 45, density=0.2, seed=21)
    ratings[:, 7] = 0.0
    ratings[11] = 0.0
    matrix = sp.csr_matrix(ratings, dtype=np.float32)
    base = dict(n_factors=6, epochs=4, solver=solver, dtype="float64", **REFERENCE_CASES[case])
    graph = train_wals(matrix, WALSConfig(kernel="graph", **base))
    fused = train_wals(matrix, WALSConfig(kernel="fused", **base))
    tolerance = dict(rtol=1e-7, atol=1e-9)
    np.testing.assert_allclose(fused.user_factors, graph.user_factors, **tolerance)
    np.testing.assert_allclose(fused.item_factors, graph.item_factors, **tolerance)
    np.testing.assert_allclose(
        [h.loss for h in fused.history], [h.loss for h in graph.history], rtol=1e-10
    )
    if graph.user_bias is not None:
        np.testing.assert_allclose(fused.user_bias, graph.user_bias, **tolerance)
        np.testing.assert_allclose(fused.item_bias, graph.item_bias, **tolerance)


def test_fused_kernel_float32_on_a_realistic_matrix() -> None:
    # Power-law rows (a few long ones) in float32, the production setting: the two kernels sum
    # in different orders, so they agree to float32 rounding, and both recover the same ranking.
    from walsrec.synthetic import generate_interactions

    data = generate_interactions(600, 300, 20000, seed=3)
    matrix = sp.csr_matrix(
        (data.ratings, (data.users, data.items)), shape=(data.n_users, data.n_items)
    )
    for solver in ("cholesky", "cg"):
        base = dict(n_factors=16, epochs=5, solver=solver, regularization=5.0, alpha=2.0)
        graph = train_wals(matrix, WALSConfig(kernel="graph", **base))
        fused = train_wals(matrix, WALSConfig(kernel="fused", **base))
        for ours, theirs in (
            (fused.user_factors, graph.user_factors),
            (fused.item_factors, graph.item_factors),
        ):
            assert np.linalg.norm(ours - theirs) < 1e-3 * np.linalg.norm(theirs), solver
        assert fused.history[-1].loss == pytest.approx(graph.history[-1].loss, rel=1e-5)


def test_kernel_auto_falls_back_when_the_fused_kernel_cannot_be_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path, caplog: pytest.LogCaptureFixture
) -> None:
    # A fresh build folder and no compiler anywhere: a real failed build, not a stub.
    monkeypatch.setenv("WALSREC_NATIVE_CACHE", str(tmp_path / "native"))
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))
    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr("walsrec.models.wals._warned_no_fused_kernel", False)
    native.load.cache_clear()
    try:
        with pytest.raises(native.NativeBuildError, match="no C\\+\\+ compiler found"):
            native.build()
        matrix = sp.csr_matrix(random_ratings(20, 15, density=0.3, seed=5)[0], dtype=np.float32)
        config = WALSConfig(n_factors=3, epochs=2, dtype="float64")
        with caplog.at_level(logging.WARNING, logger="walsrec.models.wals"):
            auto = train_wals(matrix, config)
        assert "fused WALS kernel is unavailable" in caplog.text
        assert "no C++ compiler found" in caplog.text
        graph = train_wals(
            matrix, WALSConfig(n_factors=3, epochs=2, dtype="float64", kernel="graph")
        )
        np.testing.assert_array_equal(auto.user_factors, graph.user_factors)
        with pytest.raises(native.NativeBuildError, match="compiler"):
            train_wals(matrix, WALSConfig(n_factors=3, epochs=2, kernel="fused"))
    finally:
        native.load.cache_clear()  # the next test loads the real library again


def test_kernel_is_validated() -> None:
    with pytest.raises(
        ConfigError, match="kernel: Input should be 'auto', 'fused' or 'graph', got 'c'"
    ):
        WALSConfig.from_dict({"kernel": "c"})
    assert WALSConfig().kernel == "auto"


def test_training_never_modifies_the_callers_matrix() -> None:
    # A canonical float32 CSR matrix is used without a copy: it must come back untouched.
    ratings, _ = random_ratings(30, 20, density=0.3, seed=6)
    matrix = sp.csr_matrix(ratings, dtype=np.float32)
    before = (matrix.data.copy(), matrix.indices.copy(), matrix.indptr.copy())
    train_wals(matrix, WALSConfig(n_factors=3, epochs=2))
    for array, original in zip((matrix.data, matrix.indices, matrix.indptr), before, strict=True):
        np.testing.assert_array_equal(array, original)


def _light_solve_inputs(dtype: type, d: int, lengths: list[int], seed: int) -> dict:
    """A half-step's op inputs: rows of the given lengths over 80 design rows, with biases-like
    offsets, a zero and a large extra, and three distinct row regularizations."""
    rng = np.random.default_rng(seed)
    n_other = 80
    design = rng.normal(size=(n_other, d))
    offsets = rng.normal(size=n_other)
    indptr = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    indices = np.concatenate(
        [rng.choice(n_other, n, replace=False) for n in lengths] + [np.zeros(0, int)]
    ).astype(np.int32)
    extra = rng.uniform(0.0, 5.0, size=indices.size)
    extra[::7] = 0.0  # an entry with no extra confidence
    extra[1::11] = 300.0  # a heavy play count
    regs = np.array([0.5, 2.0, 30.0])[np.arange(len(lengths)) % 3]
    return dict(
        design=design.astype(dtype),
        offsets=offsets.astype(dtype),
        unobserved_gram=(0.7 * design.T @ design).astype(dtype),
        unobserved_offset_term=(0.7 * design.T @ offsets).astype(dtype),
        indptr=indptr,
        indices=indices,
        extra=extra.astype(dtype),
        weighted_target=rng.uniform(0.0, 5.0, size=indices.size).astype(dtype),
        row_regularization=regs.astype(dtype),
        start=np.zeros((len(lengths), d), dtype),
    )


def _dense_row_solves(inputs: dict) -> np.ndarray:
    """np.linalg.solve of every row's normal equations, in float64 (the op's documentation);
    a row without entries is exactly zero."""
    f64 = {key: np.asarray(value, np.float64) for key, value in inputs.items()}
    indptr, indices = inputs["indptr"], inputs["indices"]
    d = f64["design"].shape[1]
    solutions = []
    for row in range(indptr.size - 1):
        entries = slice(indptr[row], indptr[row + 1])
        if indptr[row + 1] == indptr[row]:
            solutions.append(np.zeros(d))
            continue
        q = f64["design"][indices[entries]]
        extra = f64["extra"][entries]
        lhs = f64["unobserved_gram"] + f64["row_regularization"][row] * np.eye(d)
        lhs += q.T @ (extra[:, None] * q)
        coefficients = f64["weighted_target"][entries] - extra * f64["offsets"][indices[entries]]
        solutions.append(np.linalg.solve(lhs, q.T @ coefficients - f64["unobserved_offset_term"]))
    return np.array(solutions)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_light_row_solve_equals_the_exact_solve(dtype: type) -> None:
    # Rows of 0, 1, 2 and many entries; "always" sends every row through the Woodbury solve,
    # "never" through the exact one, "auto" splits them at d / 4 = 4 entries.
    d = 16
    lengths = [0, 1, 2, 3, 4, 5, 40, 1, 0, 2, 60, 1]
    inputs = _light_solve_inputs(dtype, d, lengths, seed=8)
    expected = _dense_row_solves(inputs)
    tolerance = dict(rtol=2e-4, atol=2e-5) if dtype is np.float32 else dict(rtol=1e-9, atol=1e-11)
    solve = native.load().wals_solve_rows
    for light_solve in ("always", "auto", "never"):
        solution = solve(**inputs, solver="cholesky", light_solve=light_solve).numpy()
        np.testing.assert_allclose(solution, expected, **tolerance, err_msg=light_solve)


@pytest.mark.parametrize("d", [16, 48, 64, 128, 65])
def test_vectorized_cg_pass_solves_what_the_generic_one_solves(d: int) -> None:
    # float32 rows of 16 to 128 values take the AVX-512 pass where the CPU has it (65 never
    # does), float64 rows the generic loop: the same CG steps, to float32 rounding. Rows of
    # every length mod 4 (the pass takes entries four at a time), a warm start, and near the
    # exact solve after 2 d steps.
    lengths = [0, 1, 2, 3, 4, 5, 6, 7, 41, 1, 0, 62]
    inputs = _light_solve_inputs(np.float64, d, lengths, seed=d)
    inputs["start"] = np.random.default_rng(d).normal(size=inputs["start"].shape)
    single = {
        key: value.astype(np.float32) if value.dtype == np.float64 else value
        for key, value in inputs.items()
    }
    solve = native.load().wals_solve_rows
    for steps in (1, 3):
        expected = solve(**inputs, solver="cg", cg_steps=steps).numpy()
        ours = solve(**single, solver="cg", cg_steps=steps).numpy()
        scale = np.abs(expected).max()
        np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-4 * scale, err_msg=str(steps))
    # float32 CG loses orthogonality over many steps on rows this ill-conditioned (heavy
    # entries, small regularization): close to the exact solve, not to float32 rounding.
    exact = _dense_row_solves(inputs)
    converged = solve(**single, solver="cg", cg_steps=2 * d).numpy()
    np.testing.assert_allclose(converged, exact, rtol=0, atol=1e-2 * np.abs(exact).max())


@pytest.mark.parametrize("solver", ["cg", "cholesky"])
def test_implicit_targets_from_the_extra_confidence_equal_stored_ones(solver: str) -> None:
    # Implicit feedback's c * t is w0 + extra: computed by the kernel from one value instead of
    # read per entry, with the same float32 sum, so the solutions are the same bits.
    inputs = _light_solve_inputs(np.float32, 64, [0, 1, 3, 9, 40, 2, 79], seed=5)
    w0 = np.float32(0.75)
    stored = {**inputs, "weighted_target": w0 + inputs["extra"]}
    derived = {**inputs, "weighted_target": np.array([w0], np.float32)}
    solve = native.load().wals_solve_rows
    expected = solve(**stored, solver=solver).numpy()
    ours = solve(**derived, solver=solver, target_from_extra=True).numpy()
    np.testing.assert_array_equal(ours, expected)
    with pytest.raises(tf.errors.InvalidArgumentError, match="one value"):
        solve(**stored, solver=solver, target_from_extra=True)


def test_implicit_training_keeps_no_per_entry_target() -> None:
    # 4 bytes an entry on each side (160 MB at ML-20M): the fused sides hold w0 alone.
    from walsrec.models import wals as wals_module

    matrix = sp.random(50, 40, density=0.2, format="csr", random_state=4, dtype=np.float32)
    config = WALSConfig(n_factors=8, kernel="fused", alpha=3.0, unobserved_weight=0.5)
    data = wals_module._prepare_interactions(matrix, config)
    assert data.weighted_target is None
    regs = wals_module._row_regularization(np.diff(data.user_indptr), config)
    item_regs = wals_module._row_regularization(np.diff(data.item_indptr), config)
    user_side, item_side, _ = wals_module._prepare_sides(data, "fused", regs, item_regs, 8, config)
    for side in (user_side, item_side):
        assert side.target_from_extra
        np.testing.assert_array_equal(side.weighted_target.numpy(), [0.5])


def test_light_row_solve_falls_back_to_the_exact_solve_on_a_negative_extra() -> None:
    # Woodbury needs extra >= 0 (a square root); the op is also correct for other inputs.
    inputs = _light_solve_inputs(np.float64, 8, [1, 2, 0], seed=9)
    inputs["extra"][1] = -0.25
    solution = native.load().wals_solve_rows(**inputs, solver="cholesky", light_solve="always")
    np.testing.assert_allclose(solution.numpy(), _dense_row_solves(inputs), rtol=1e-9, atol=1e-11)


def test_light_rows_with_count_scaled_regularization_train_like_the_graph_kernel() -> None:
    # ALS-WR gives each row length its own regularization: one shared factorization per value.
    # 40 factors put every row of up to 10 entries on the light path.
    ratings, _ = random_ratings(70, 120, density=0.04, seed=10)
    matrix = sp.csr_matrix(ratings, dtype=np.float32)
    item_lengths = np.diff(matrix.tocsc().indptr)
    assert item_lengths.max() <= 10 and (item_lengths <= 2).sum() > 20  # all items light
    base = dict(n_factors=40, epochs=3, dtype="float64", regularization=0.5)
    for scaling in ("none", "count"):
        config = dict(base, regularization_scaling=scaling)
        graph = train_wals(matrix, WALSConfig(kernel="graph", **config))
        fused = train_wals(matrix, WALSConfig(kernel="fused", **config))
        np.testing.assert_allclose(fused.user_factors, graph.user_factors, rtol=1e-6, atol=1e-8)
        np.testing.assert_allclose(fused.item_factors, graph.item_factors, rtol=1e-6, atol=1e-8)


def test_training_without_the_loss_gives_the_same_factors() -> None:
    from walsrec.synthetic import generate_interactions

    matrix = generate_interactions(200, 300, 6_000, feedback="counts", seed=4).to_csr()
    config = WALSConfig.from_dict(
        {"n_factors": 8, "epochs": 3, "observed_weighting": "log", "jit_compile": False}
    )
    tracked = train_wals(matrix, config)
    untracked = train_wals(matrix, config, track_loss=False)
    assert np.array_equal(tracked.user_factors, untracked.user_factors)
    assert np.array_equal(tracked.item_factors, untracked.item_factors)
    assert all(np.isfinite(e.loss) for e in tracked.history)
    assert all(np.isnan(e.loss) for e in untracked.history)


@pytest.mark.parametrize("kernel", ["fused", "graph"])
@pytest.mark.parametrize("solver", ["cg", "cholesky"])
@pytest.mark.parametrize("use_biases", [False, True])
def test_rows_without_entries_get_exactly_zero_factors(
    kernel: str, solver: str, use_biases: bool
) -> None:
    # CG warm-starts from the previous factors, so before the fix an empty row kept ~1e-4 of its
    # random start at small regularization (and the exact solve with biases a bias-only fit),
    # and cosine similarity, which normalizes, made such an item a neighbour of many others.
    from walsrec.synthetic import generate_interactions

    data = generate_interactions(200, 120, 3000, seed=11, feedback="counts")
    matrix = sp.lil_matrix(
        sp.csr_matrix((data.ratings, (data.users, data.items)), shape=(200, 120))
    )
    matrix[17, :] = 0
    matrix[:, [4, 119]] = 0
    config = WALSConfig(
        n_factors=8,
        regularization=0.001,
        epochs=3,
        solver=solver,
        kernel=kernel,
        use_biases=use_biases,
        jit_compile=False,
    )
    model = train_wals(sp.csr_matrix(matrix), config)
    assert not model.user_factors[17].any()
    assert not model.item_factors[[4, 119]].any()
    if use_biases:
        assert model.user_bias[17] == 0 and not model.item_bias[[4, 119]].any()
    # Every other row still learned something.
    assert np.all(np.abs(np.delete(model.item_factors, [4, 119], axis=0)).sum(axis=1) > 0)


@pytest.mark.parametrize(
    ("mode", "use_biases", "dtype"),
    [("implicit", False, "float32"), ("explicit", True, "float64"), ("implicit", True, "float32")],
)
def test_native_objective_equals_the_tensorflow_sums(monkeypatch, mode, use_biases, dtype):
    """The objective's observed sums by the ranking kernels' `walsrec_observed_sums` agree with
    the TensorFlow blocks (float64 sums of float32 products there: within 1e-6), and training
    itself does not change."""
    if native.kernels() is None:
        pytest.skip("no C++ compiler: the native kernels are unavailable")
    matrix = sp.random(300, 200, density=0.05, format="csr", random_state=1)
    matrix.data = np.ceil(matrix.data * 5)
    config = WALSConfig(
        n_factors=8, epochs=3, mode=mode, use_biases=use_biases, dtype=dtype, solver="cg"
    )
    with_native = train_wals(matrix, config)
    monkeypatch.setattr(native, "kernels", lambda: None)
    with_tensorflow = train_wals(matrix, config)
    np.testing.assert_array_equal(with_native.user_factors, with_tensorflow.user_factors)
    np.testing.assert_array_equal(with_native.item_factors, with_tensorflow.item_factors)
    for ours, theirs in zip(with_native.history, with_tensorflow.history, strict=True):
        assert ours.loss == pytest.approx(theirs.loss, rel=1e-6)


def test_blockwise_start_and_objective_equal_the_whole_matrix_ones(monkeypatch):
    """The initial factors and the objective's float64 Gram and penalty are computed a block of
    rows at a time (bounded copies at 10^7 users): the same factors and, to rounding, the same
    loss as in one block."""
    from walsrec import synthetic
    from walsrec.models import wals as wals_module

    matrix = synthetic.generate_interactions(3_000, 2_000, 60_000, seed=5).to_csr()
    config = WALSConfig(n_factors=8, epochs=2, regularization=5.0, use_biases=True)
    whole = train_wals(matrix, config)
    monkeypatch.setattr(wals_module, "_ROW_BLOCK", 256)
    blocks = train_wals(matrix, config)
    assert np.array_equal(whole.user_factors, blocks.user_factors)
    assert np.array_equal(whole.item_factors, blocks.item_factors)
    for a, b in zip(whole.history, blocks.history, strict=True):
        assert b.loss == pytest.approx(a.loss, rel=1e-12)
