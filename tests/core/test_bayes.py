"""Posterior averaging of explicit biased WALS (walsrec.models.bayes): the Gibbs sampler's draws,
its average against the point estimate, determinism, the SVD compression and config errors."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.errors import ConfigError, DataError
from walsrec.models import bayes as bayes_module
from walsrec.models.bayes import (
    BayesConfig,
    PairAverage,
    PosteriorMean,
    compress_factors,
    gibbs_samples,
    train_bayes,
)
from walsrec.models.wals import WALSConfig, train_wals

RATING_WALS = {
    "mode": "explicit",
    "unobserved_weight": 0.0,
    "observed_weighting": "constant",
    "alpha": 1.0,
    "use_biases": True,
}


def _wals(**overrides) -> WALSConfig:
    return WALSConfig(**{**RATING_WALS, **overrides})


def _planted(seed: int = 0, *, noise: float = 0.5, density: float = 0.08):
    """Ratings = 8 + user bias + item bias + a rank-3 taste + noise, sparsely observed."""
    rng = np.random.default_rng(seed)
    n_users, n_items, rank = 300, 200, 3
    users = rng.normal(0, 0.6, (n_users, rank))
    items = rng.normal(0, 0.6, (n_items, rank))
    truth = (
        8.0 + rng.normal(0, 0.4, (n_users, 1)) + rng.normal(0, 0.4, (1, n_items)) + users @ items.T
    )
    observed = rng.random(truth.shape) < density
    observed[np.arange(n_users), rng.integers(0, n_items, n_users)] = True  # no empty user
    ratings = truth + rng.normal(0, noise, truth.shape)
    rows, cols = np.nonzero(observed)
    matrix = sp.csr_matrix((ratings[rows, cols], (rows, cols)), shape=truth.shape)
    return matrix, truth, observed


def _held_out_error(predict, truth: np.ndarray, observed: np.ndarray) -> float:
    rows, cols = np.nonzero(~observed)
    return float(np.sqrt(np.mean((predict(rows, cols) - truth[rows, cols]) ** 2)))


def test_conditional_draws_have_the_normal_equations_mean_and_covariance() -> None:
    # One row repeated 20000 times: one call draws 20000 independent samples of its
    # conditional posterior N(A^-1 b, A^-1), A = Lambda + tau Q^T Q, b = Lambda mu + tau Q^T t.
    rng = np.random.default_rng(1)
    design = np.hstack([rng.normal(size=(6, 2)), np.ones((6, 1))])  # [y, 1] of 6 items
    offsets = rng.normal(size=6)  # the items' biases
    ratings = rng.normal(size=6)
    prior_mean = np.array([0.3, -0.2, 0.1])
    prior_precision = np.array([[2.0, 0.3, 0.0], [0.3, 1.5, 0.2], [0.0, 0.2, 1.0]])
    tau = 1.7
    n_draws = 20000
    matrix = sp.csr_matrix(np.tile(ratings, (n_draws, 1)))

    draws, squared_error = bayes_module._sample_rows(
        np.random.default_rng(2),
        matrix,
        (matrix != 0).astype(np.float64),
        design,
        offsets,
        prior_mean,
        prior_precision,
        tau,
    )

    precision = prior_precision + tau * design.T @ design
    covariance = np.linalg.inv(precision)
    mean = covariance @ (prior_precision @ prior_mean + tau * design.T @ (ratings - offsets))
    np.testing.assert_allclose(draws.mean(axis=0), mean, atol=4 * np.sqrt(covariance.max() / 2e4))
    np.testing.assert_allclose(np.cov(draws.T), covariance, rtol=0.05, atol=0.005)
    # The squared error it reports is that of its draws, computed from the sums.
    direct = np.sum((ratings[np.newaxis, :] - offsets - draws @ design.T) ** 2)
    assert squared_error == pytest.approx(direct, rel=1e-9)


def test_wishart_draws_have_the_wishart_mean() -> None:
    rng = np.random.default_rng(0)
    scale = np.array([[0.5, 0.1], [0.1, 0.2]])
    draws = np.array([bayes_module._wishart(rng, scale, 7.0) for _ in range(4000)])
    np.testing.assert_allclose(draws.mean(axis=0), 7.0 * scale, rtol=0.05, atol=0.01)


def test_posterior_average_beats_the_best_point_estimate_on_a_planted_matrix() -> None:
    # Few noisy ratings per row and more factors (10) than the truth has (3): every point
    # estimate overfits or underfits, whatever its regularization; the average does neither.
    matrix, truth, observed = _planted()
    point_errors = {
        regularization: _held_out_error(
            train_wals(
                matrix,
                _wals(
                    n_factors=10,
                    regularization=regularization,
                    regularization_scaling="count",
                    epochs=20,
                    jit_compile=False,
                ),
            ).predict,
            truth,
            observed,
        )
        for regularization in (0.03, 0.1, 0.3)  # 0.1 is the best of a wider grid
    }
    averaged = train_bayes(matrix, _wals(n_factors=10), BayesConfig(posterior_samples=100))

    averaged_error = _held_out_error(averaged.predict, truth, observed)
    assert averaged_error < 0.9 * min(point_errors.values()), (averaged_error, point_errors)
    # Much better than the biases' scale alone: it recovered the taste part.
    assert averaged_error < 0.6 * (truth - truth.mean()).std(), averaged_error


def test_deterministic_for_a_seed_and_different_for_another() -> None:
    matrix, _, _ = _planted(seed=3)
    config = BayesConfig(posterior_samples=5, burn_in=2)
    first = train_bayes(matrix, _wals(n_factors=4, seed=7), config)
    again = train_bayes(matrix, _wals(n_factors=4, seed=7), config)
    other = train_bayes(matrix, _wals(n_factors=4, seed=8), config)
    np.testing.assert_array_equal(first.user_factors, again.user_factors)
    np.testing.assert_array_equal(first.item_bias, again.item_bias)
    assert [h.loss for h in first.history] == [h.loss for h in again.history]
    assert np.abs(first.item_bias - other.item_bias).max() > 1e-3


def test_compressed_model_predicts_the_average_of_the_samples() -> None:
    matrix, _, _ = _planted(seed=4)
    n_users, n_items = matrix.shape
    wals = _wals(n_factors=3)
    config = BayesConfig(posterior_samples=6, burn_in=3, posterior_rank=18)  # 6 * 3: exact
    rows, cols = (a.ravel() for a in np.meshgrid(np.arange(n_users), np.arange(n_items)))
    average = PairAverage(rows, cols)
    singles = []
    for sample in gibbs_samples(matrix, wals, config):
        singles.append(sample.predict(rows, cols))
        expected = average.add(sample)
    np.testing.assert_allclose(expected, np.mean(singles, axis=0), rtol=1e-12)

    model = train_bayes(matrix, wals, config)
    assert model.user_factors.shape == (n_users, 18) and model.config.n_factors == 18
    np.testing.assert_allclose(model.predict(rows, cols), expected, atol=2e-5)
    assert len(model.history) == 9  # every sweep, burn-in included


def test_compression_to_a_lower_rank_is_the_best_truncation() -> None:
    rng = np.random.default_rng(5)
    left, right = rng.normal(size=(40, 12)), rng.normal(size=(30, 12))
    exact = left @ right.T
    for rank in (12, 20):
        small_left, small_right = compress_factors(left, right, rank)
        assert small_left.shape[1] == 12  # never more than the product's rank
        np.testing.assert_allclose(small_left @ small_right.T, exact, atol=1e-10)
    small_left, small_right = compress_factors(left, right, 5)
    u, s, vt = np.linalg.svd(exact)
    np.testing.assert_allclose(small_left @ small_right.T, (u[:, :5] * s[:5]) @ vt[:5], atol=1e-9)

    # Streaming (compressing whenever the sum holds more than 2 * rank columns) stays within
    # the discarded tail of the final best truncation.
    stream = PosteriorMean(rank=8)
    samples = (
        [rng.normal(size=(40, 3)) for _ in range(10)],
        [rng.normal(size=(30, 3)) for _ in range(10)],
    )
    for user_factors, item_factors in zip(*samples, strict=True):
        stream.add(
            bayes_module.PosteriorSample(1, user_factors, item_factors, None, None, 0.0, 1.0)
        )
    streamed_left, streamed_right, no_bias, _ = stream.factors()
    assert no_bias is None and streamed_left.shape[1] == 8
    average = sum(a @ b.T for a, b in zip(*samples, strict=True)) / 10
    best_error = np.linalg.norm(np.linalg.svd(average, compute_uv=False)[8:])
    streamed_error = np.linalg.norm(streamed_left @ streamed_right.T - average)
    assert best_error <= streamed_error + 1e-9 and streamed_error < 1.5 * best_error


def test_without_biases_the_model_has_none() -> None:
    matrix, truth, observed = _planted(seed=6)
    model = train_bayes(
        matrix, _wals(n_factors=4, use_biases=False), BayesConfig(posterior_samples=20)
    )
    assert model.user_bias is None and model.item_bias is None
    assert model.global_mean == pytest.approx(matrix.data.mean())
    # The mean is still subtracted, so predictions are ratings, not deviations.
    assert abs(_held_out_error(model.predict, truth, observed)) < truth.std()


def test_callback_sees_every_sample_and_can_stop() -> None:
    matrix, _, _ = _planted(seed=7)
    seen = []

    def callback(number, sample) -> bool:
        seen.append((number, sample.noise_precision))
        return number == 3

    model = train_bayes(
        matrix, _wals(n_factors=3), BayesConfig(posterior_samples=10, burn_in=4), callback=callback
    )
    assert [number for number, _ in seen] == [1, 2, 3]
    assert all(precision > 0 for _, precision in seen)
    assert len(model.history) == 4 + 3


def test_fixed_noise_precision_is_used() -> None:
    matrix, _, _ = _planted(seed=8)
    config = BayesConfig(posterior_samples=2, burn_in=0, noise_precision=3.5)
    precisions = {s.noise_precision for s in gibbs_samples(matrix, _wals(n_factors=2), config)}
    assert precisions == {3.5}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"posterior_samples": -1}, "bayes.posterior_samples: Input should be greater than or"),
        ({"posterior_samples": 2.5}, "bayes.posterior_samples: Input should be a valid integer"),
        ({"burn_in": True}, "bayes.burn_in: Input should be a valid integer, got True"),
        ({"posterior_rank": 0}, "bayes.posterior_rank: Input should be greater than or equal to 1"),
        ({"noise_precision": 0}, "bayes.noise_precision: Input should be greater than 0, got 0"),
        ({"hyperprior_scale": float("nan")}, "bayes.hyperprior_scale: Input should be a finite"),
        ({"hyperprior_scale": None}, "bayes.hyperprior_scale: Input should be a valid number"),
        ({"posterior_sample": 10}, "bayes.posterior_sample: unknown key; did you mean posterior_s"),
    ],
)
def test_config_errors_name_the_key(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        BayesConfig.from_dict(values)


def test_config_round_trips_and_is_off_by_default() -> None:
    assert not BayesConfig().enabled and not BayesConfig.from_dict(None).enabled
    config = BayesConfig.from_dict({"posterior_samples": 10, "noise_precision": 2})
    assert config.noise_precision == 2.0 and isinstance(config.noise_precision, float)
    assert BayesConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ConfigError, match="bayes must be a mapping"):
        BayesConfig.from_dict([1, 2])


@pytest.mark.parametrize(
    ("wals", "message"),
    [
        ({"mode": "implicit", "unobserved_weight": 0.0}, "needs wals.mode: explicit"),
        ({"unobserved_weight": 0.5}, r"needs wals.unobserved_weight: 0 \(got 0.5\)"),
        ({"observed_weighting": "linear"}, "needs wals.observed_weighting: constant"),
    ],
)
def test_sampling_a_model_that_is_not_a_rating_model_is_refused(wals: dict, message: str) -> None:
    config = _wals(**wals)
    with pytest.raises(ConfigError, match=message):
        BayesConfig(posterior_samples=5).check_model(config)
    with pytest.raises(ConfigError, match=message):
        next(gibbs_samples(sp.csr_matrix(np.eye(3)), config, BayesConfig(posterior_samples=5)))
    BayesConfig(posterior_samples=0).check_model(config)  # off: any WALS config is fine


def test_unusable_input_is_one_clear_error() -> None:
    config = BayesConfig(posterior_samples=1)
    with pytest.raises(DataError, match="no observed ratings"):
        train_bayes(sp.csr_matrix((3, 4)), _wals(n_factors=2), config)
    with pytest.raises(DataError, match="non-finite"):
        train_bayes(sp.csr_matrix(np.array([[1.0, np.nan]])), _wals(n_factors=2), config)
    with pytest.raises(DataError, match="2-D scipy.sparse"):
        train_bayes(np.ones((2, 2)), _wals(n_factors=2), config)
    with pytest.raises(ConfigError, match="posterior_samples is 0"):
        train_bayes(sp.csr_matrix(np.eye(2)), _wals(n_factors=2), BayesConfig())
