"""Bayesian averaging of explicit biased WALS: BPMF Gibbs sampling (Salakhutdinov & Mnih, 2008).

The model is WALS's explicit biased one: rating r_ui = mu + b_u + c_i + x_u . y_i + noise, with
mu the mean training rating. Instead of the single most likely factors (what WALS computes), the
predictor is the average over samples of the posterior,

    r_hat_ui = mu + (1/S) sum_s (b_u,s + c_i,s + x_u,s . y_i,s),

which is much harder to overfit (ML-100K: RMSE about 0.90 instead of 0.917).

Gibbs sampling uses WALS's per-row normal equations. With the items fixed, the free vector of a
user is v_u = [x_u, b_u], the design vector of an item q_i = [y_i, 1] and its offset c_i, as in
`walsrec.models.wals` (without biases v_u = x_u, q_i = y_i, no offset). Its conditional posterior is
Gaussian with precision and mean

    A_u = Lambda_U + tau * sum_{i in O_u} q_i q_i^T
    A_u m_u = Lambda_U mu_U + tau * sum_{i in O_u} (r_ui - mu - c_i) q_i,

and a sample is v_u = m_u + L_u^-T z with A_u = L_u L_u^T (Cholesky) and z ~ N(0, I). Items are
sampled the same way. Each sweep also samples

- the prior mean mu_U and precision Lambda_U of the user vectors (and of the items) from their
  Normal-Wishart posterior: prior mean 0, beta0 = 2, nu0 = dimension, W0 = hyperprior_scale * I
  (the paper's values with hyperprior_scale 1): the prior learns the regularization that WALS
  takes as a hyperparameter;
- the noise precision tau from its Gamma posterior (prior Gamma(1, 1)), unless
  `noise_precision` fixes it.

The first `burn_in` sweeps are discarded; the next `posterior_samples` are averaged.

The average is itself a low-rank factorization: the biases average to biases, and
(1/S) sum_s X_s Y_s^T = [X_1, ..., X_S] [Y_1, ..., Y_S]^T / S. `PosteriorMean` keeps that sum
compressed to at most `posterior_rank` factors with a thin SVD (QR of each side, SVD of the small
core), so the result is an ordinary `WALSModel` (factors, biases, global mean) that evaluation,
the model bundle, batch inference and serving use unchanged. The compression is exact while the
samples hold no more than `posterior_rank` factors in total; beyond, it keeps the leading
singular directions (on ML-100K rank 64 costs about 0.0002 RMSE).

Everything is NumPy and deterministic given `WALSConfig.seed`. The dense algebra is many small
matrices (batched Cholesky of d x d systems) and thin QRs, which run single-threaded: OpenBLAS's
threads only add overhead there, and on a busy machine they made sampling ten times slower.
"""

from __future__ import annotations

import functools
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import scipy.sparse as sp
from pydantic import Field
from threadpoolctl import ThreadpoolController

from walsrec.config import _Section
from walsrec.errors import ConfigError, DataError, WalsrecError
from walsrec.lazy import LazyModule
from walsrec.models.wals_config import WALSConfig
from walsrec.progress import progress_bar

# scipy.linalg on first use: 0.15 s of import that a config check or a cached run never needs.
linalg = LazyModule("scipy.linalg")

if TYPE_CHECKING:  # walsrec.models.wals imports TensorFlow: only when sampling starts
    from walsrec.models.wals import EpochStats, WALSModel

__all__ = [
    "BayesConfig",
    "PairAverage",
    "PosteriorMean",
    "PosteriorSample",
    "gibbs_samples",
    "train_bayes",
]

logger = logging.getLogger(__name__)

# The Normal-Wishart hyperprior of the paper (beta0, and nu0 = dimension below) and a vague
# Gamma(shape, rate) prior on the noise precision: with thousands of rows per side the data
# dominate both.
PRIOR_MEAN_STRENGTH = 2.0
NOISE_PRIOR_SHAPE = 1.0
NOISE_PRIOR_RATE = 1.0


class BayesConfig(_Section):
    """The `bayes:` section: posterior averaging of explicit biased WALS (off by default).

    The sampled model takes `n_factors`, `use_biases`, `init_scale` and `seed` from the WALS
    config; the priors it learns replace `regularization`, `regularization_scaling` and
    `epochs`, which it does not use.

    Attributes:
        posterior_samples: samples averaged into the predictor; 0 turns sampling off (WALS's
            point estimate).
        burn_in: Gibbs sweeps discarded before the first averaged sample.
        noise_precision: precision of the rating noise (1 / variance); null samples it.
        hyperprior_scale: W0 = hyperprior_scale * I of the Normal-Wishart hyperprior on the
            factors' precision; larger pulls the factors harder towards their mean.
        posterior_rank: most factors of the averaged model (its rank); the average is exact
            while posterior_samples * (n_factors) <= posterior_rank.
    """

    section: ClassVar[str] = "bayes"
    posterior_samples: int = Field(default=0, ge=0)
    burn_in: int = Field(default=20, ge=0)
    noise_precision: float | None = Field(default=None, gt=0.0, allow_inf_nan=False)
    hyperprior_scale: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)
    posterior_rank: int = Field(default=64, ge=1)

    @property
    def enabled(self) -> bool:
        """Whether predictions are posterior averages (else WALS's point estimate)."""
        return self.posterior_samples > 0

    def check_model(self, wals: WALSConfig) -> None:
        """Raise ConfigError if sampling is on and `wals` is not a rating model it can sample.

        The sampler's likelihood is Gaussian noise on each observed rating, alike for every
        rating: WALS's explicit mode fitting the observed entries only, with constant weights.
        """
        if not self.enabled:
            return
        problems = []
        if wals.mode != "explicit":
            problems.append(f"wals.mode: explicit (got {wals.mode!r})")
        if wals.unobserved_weight != 0:
            problems.append(f"wals.unobserved_weight: 0 (got {wals.unobserved_weight})")
        if wals.observed_weighting != "constant":
            problems.append(f"wals.observed_weighting: constant (got {wals.observed_weighting!r})")
        if problems:
            raise ConfigError(
                f"bayes.posterior_samples: {self.posterior_samples} samples a rating model, "
                f"which needs {'; '.join(problems)}; or set bayes.posterior_samples: 0"
            )


_THREADPOOLS: ThreadpoolController | None = None


def _single_threaded_blas() -> Any:
    """A context in which BLAS/LAPACK calls use one thread (see the module docstring)."""
    global _THREADPOOLS
    if _THREADPOOLS is None:
        _THREADPOOLS = ThreadpoolController()
    return _THREADPOOLS.limit(limits=1, user_api="blas")


# --------------------------------------------------------------------------------------------
# Samples and their average
# --------------------------------------------------------------------------------------------


@dataclass
class PosteriorSample:
    """One Gibbs sample of the factors (float64), `number` counting averaged samples from 1."""

    number: int
    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray | None
    item_bias: np.ndarray | None
    global_mean: float
    noise_precision: float

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """This sample's predictions for (user, item) index pairs."""
        values = np.einsum("ij,ij->i", self.user_factors[users], self.item_factors[items])
        if self.user_bias is not None:
            values += self.user_bias[users] + self.item_bias[items]
        return values + self.global_mean


class PairAverage:
    """The running posterior-mean prediction of fixed (user, item) pairs: O(pairs * d) a sample.

    This is what the averaged model predicts for these pairs, without building that model.
    """

    def __init__(self, users: np.ndarray, items: np.ndarray) -> None:
        self.users = np.asarray(users, dtype=np.int64)
        self.items = np.asarray(items, dtype=np.int64)
        self._sum = np.zeros(self.users.shape, dtype=np.float64)
        self.count = 0

    def add(self, sample: PosteriorSample) -> np.ndarray:
        """Add a sample's predictions; returns the average so far."""
        self._sum += sample.predict(self.users, self.items)
        self.count += 1
        return self._sum / self.count


class PosteriorMean:
    """The average of samples as one factor model, compressed to at most `rank` factors.

    The factor part is kept as left @ right.T = sum of the samples' X_s Y_s^T; when it holds more
    than 2 * rank columns (or at the end) it is compressed by a thin SVD to its `rank` leading
    singular directions, which is exact while its rank is at most `rank`.
    """

    def __init__(self, rank: int) -> None:
        self.rank = int(rank)
        self.count = 0
        self._left: np.ndarray | None = None
        self._right: np.ndarray | None = None
        self._user_bias: np.ndarray | None = None
        self._item_bias: np.ndarray | None = None
        self.global_mean = 0.0

    def add(self, sample: PosteriorSample) -> None:
        """Add one sample to the sum."""
        if self._left is None:
            self._left, self._right = sample.user_factors.copy(), sample.item_factors.copy()
            if sample.user_bias is not None:
                self._user_bias = sample.user_bias.copy()
                self._item_bias = sample.item_bias.copy()
        else:
            self._left = np.hstack([self._left, sample.user_factors])
            self._right = np.hstack([self._right, sample.item_factors])
            if sample.user_bias is not None:
                self._user_bias += sample.user_bias
                self._item_bias += sample.item_bias
        self.global_mean = sample.global_mean
        self.count += 1
        if self._left.shape[1] > 2 * self.rank:
            with _single_threaded_blas():
                self._left, self._right = compress_factors(self._left, self._right, self.rank)

    def factors(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
        """(user_factors, item_factors, user_bias, item_bias) of the average, float64.

        Raises:
            WalsrecError: no sample was added.
        """
        if self._left is None:
            raise WalsrecError("PosteriorMean: no sample to average")
        with _single_threaded_blas():
            left, right = compress_factors(self._left / self.count, self._right, self.rank)
        if self._user_bias is None:
            return left, right, None, None
        return left, right, self._user_bias / self.count, self._item_bias / self.count


def compress_factors(
    left: np.ndarray, right: np.ndarray, rank: int
) -> tuple[np.ndarray, np.ndarray]:
    """Factors (L', R') of at most `rank` columns with L' R'^T the best rank-`rank` L R^T.

    Thin SVD without forming L R^T: L = Q_l R_l and R = Q_r R_r (QR), R_l R_r^T = W S Z^T (a
    k x k SVD for k columns), so L R^T = (Q_l W) S (Q_r Z)^T; each side gets sqrt(S). Directions
    with a singular value below 1e-12 of the largest are dropped (they carry nothing).
    """
    q_left, r_left = np.linalg.qr(left)
    q_right, r_right = np.linalg.qr(right)
    core_left, values, core_right = np.linalg.svd(r_left @ r_right.T)
    keep = min(int(rank), int(np.sum(values > 1e-12 * max(values[0], 1e-300))))
    keep = max(keep, 1)
    root = np.sqrt(values[:keep])
    return q_left @ (core_left[:, :keep] * root), q_right @ (core_right[:keep].T * root)


# --------------------------------------------------------------------------------------------
# The Gibbs sampler
# --------------------------------------------------------------------------------------------


def _check_matrix(matrix: Any) -> sp.csr_matrix:
    if not sp.issparse(matrix) or len(matrix.shape) != 2:
        raise DataError(f"training matrix must be a 2-D scipy.sparse matrix, got {type(matrix)}")
    matrix = sp.csr_matrix(matrix, dtype=np.float64, copy=True)
    matrix.sum_duplicates()
    matrix.eliminate_zeros()
    if matrix.nnz == 0:
        raise DataError(f"training matrix has no observed ratings (shape {matrix.shape})")
    if not np.all(np.isfinite(matrix.data)):
        raise DataError("training matrix holds non-finite ratings (NaN or infinite)")
    return matrix


def _wishart(rng: np.random.Generator, scale: np.ndarray, dof: float) -> np.ndarray:
    """A Wishart(scale, dof) draw by Bartlett's decomposition."""
    dimension = scale.shape[0]
    chol = np.linalg.cholesky(scale)
    bartlett = np.zeros((dimension, dimension))
    bartlett[np.diag_indices(dimension)] = np.sqrt(rng.chisquare(dof - np.arange(dimension)))
    lower = np.tril_indices(dimension, -1)
    bartlett[lower] = rng.standard_normal(len(lower[0]))
    factor = chol @ bartlett
    return factor @ factor.T


def _sample_hyperprior(
    rng: np.random.Generator, vectors: np.ndarray, hyperprior_scale: float
) -> tuple[np.ndarray, np.ndarray]:
    """(mean, precision) of the rows' Gaussian prior from its Normal-Wishart posterior."""
    n_rows, dimension = vectors.shape
    beta0, nu0 = PRIOR_MEAN_STRENGTH, float(dimension)
    mean = vectors.mean(axis=0)
    centered = vectors - mean
    scatter = centered.T @ centered
    beta = beta0 + n_rows
    inverse_scale = (
        np.eye(dimension) / hyperprior_scale
        + scatter
        + (beta0 * n_rows / beta) * np.outer(mean, mean)
    )
    scale = np.linalg.inv(inverse_scale)
    precision = _wishart(rng, (scale + scale.T) / 2, nu0 + n_rows)
    # mu ~ N(n mean / beta, (beta Lambda)^-1): with beta Lambda = C C^T, mu = m + C^-T z.
    chol = np.linalg.cholesky(beta * precision)
    noise = linalg.solve_triangular(chol.T, rng.standard_normal(dimension), lower=False)
    return n_rows * mean / beta + noise, precision


def _sample_rows(
    rng: np.random.Generator,
    ratings: sp.csr_matrix,
    pattern: sp.csr_matrix,
    design: np.ndarray,
    offsets: np.ndarray,
    prior_mean: np.ndarray,
    prior_precision: np.ndarray,
    noise_precision: float,
) -> tuple[np.ndarray, float]:
    """One side's rows from their conditional posteriors (the WALS normal equations).

    `ratings` are the centered ratings of this side's rows, `pattern` the same matrix with 1 for
    every rating; `design` and `offsets` the other side's q and o.

    Returns:
        The sampled rows and the squared error of the predictions they make on `ratings`,
        from the same sums: sum_j (t_j - q_j . v)^2 = sum t_j^2 - 2 v . h + v^T G v with
        G = sum_j q_j q_j^T and h = sum_j t_j q_j (t the rating minus mean and offset).
    """
    n_rows, dimension = ratings.shape[0], design.shape[1]
    # sum_j q_j q_j^T of every row at once: the rows' patterns times the q_j outer products
    # (their upper triangles, the matrices being symmetric).
    first, second, unpack = _upper_triangle(dimension)
    packed = pattern @ (design[:, first] * design[:, second])
    gram = packed[:, unpack].reshape(n_rows, dimension, dimension)
    precision = gram * noise_precision + prior_precision
    targets = ratings.copy()
    targets.data -= offsets[ratings.indices]
    target_sums = targets @ design
    rhs = noise_precision * target_sums + prior_precision @ prior_mean
    try:
        chol = np.linalg.cholesky(precision)
    except np.linalg.LinAlgError:
        raise WalsrecError(
            "the Gibbs sampler met a row whose posterior precision is not positive definite "
            "(ratings too large?); try a larger bayes.hyperprior_scale"
        ) from None
    # With A = L L^T: the mean is L^-T (L^-1 b), and L^-T z has covariance A^-1.
    whitened = _solve_lower(chol, rhs) + rng.standard_normal((n_rows, dimension))
    rows = _solve_lower_transposed(chol, whitened)
    squared_error = (
        np.dot(targets.data, targets.data)
        - 2 * np.einsum("ni,ni->", rows, target_sums)
        + np.einsum("ni,ni->", np.einsum("nij,nj->ni", gram, rows), rows)
    )
    return rows, float(squared_error)


@functools.cache
def _upper_triangle(dimension: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Row and column of each upper-triangle entry, and for each entry of a full d x d matrix
    (row-major) the index of its upper-triangle twin."""
    first, second = np.triu_indices(dimension)
    packed_index = np.empty((dimension, dimension), dtype=np.int64)
    packed_index[first, second] = np.arange(len(first))
    packed_index[second, first] = np.arange(len(first))
    return first, second, packed_index.ravel()


def _solve_lower(lower: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """x with lower[n] @ x[n] = rhs[n] for every n: forward substitution, vectorized over n.

    d steps over all rows at once: for the small d here much faster than one LAPACK call per
    row.
    """
    solution = np.empty_like(rhs)
    for k in range(rhs.shape[1]):
        known = np.einsum("nj,nj->n", lower[:, k, :k], solution[:, :k])
        solution[:, k] = (rhs[:, k] - known) / lower[:, k, k]
    return solution


def _solve_lower_transposed(lower: np.ndarray, rhs: np.ndarray) -> np.ndarray:
    """x with lower[n].T @ x[n] = rhs[n] for every n: back substitution, vectorized over n."""
    solution = np.empty_like(rhs)
    for k in range(rhs.shape[1] - 1, -1, -1):
        known = np.einsum("nj,nj->n", lower[:, k + 1 :, k], solution[:, k + 1 :])
        solution[:, k] = (rhs[:, k] - known) / lower[:, k, k]
    return solution


def _design(free: np.ndarray, use_biases: bool) -> tuple[np.ndarray, np.ndarray]:
    """q and o of one side's rows, as in walsrec.models.wals: [factors, 1] and the bias."""
    if not use_biases:
        return free, np.zeros(len(free))
    return np.hstack([free[:, :-1], np.ones((len(free), 1))]), free[:, -1]


def gibbs_samples(
    matrix: sp.spmatrix,
    wals: WALSConfig,
    bayes: BayesConfig,
    *,
    history: list[EpochStats] | None = None,
    log: logging.Logger | None = None,
) -> Iterator[PosteriorSample]:
    """Run the Gibbs sampler; yields each of the `posterior_samples` samples after burn-in.

    Args:
        matrix: scipy.sparse [n_users, n_items] ratings; stored zeros are unobserved.
        wals: n_factors, use_biases, init_scale and seed (explicit mode; see BayesConfig).
        bayes: samples, burn-in and priors.
        history: if given, one EpochStats per sweep is appended (loss: the sample's squared
            error summed over the training ratings; seconds: the sweep's time).
        log: logger for the per-sweep lines (DEBUG); defaults to this module's.

    Raises:
        ConfigError: sampling is off, or the WALS config is not a rating model.
        DataError: the matrix is not 2-D sparse, is empty or holds non-finite values.
        WalsrecError: a posterior precision was not positive definite, or values blew up.
    """
    log = log or logger
    if not bayes.enabled:
        raise ConfigError("bayes.posterior_samples is 0: there is nothing to sample")
    bayes.check_model(wals)
    matrix = _check_matrix(matrix)
    n_users, n_items = matrix.shape
    global_mean = float(matrix.data.mean())
    users = matrix.copy()
    users.data -= global_mean
    items = users.T.tocsr()
    user_pattern, item_pattern = users.copy(), items.copy()
    user_pattern.data[:] = 1.0
    item_pattern.data[:] = 1.0

    rng = np.random.default_rng(wals.seed)
    n_factors, biases = wals.n_factors, wals.use_biases
    scale = wals.init_scale / math.sqrt(n_factors)
    user_free = rng.normal(0.0, scale, size=(n_users, n_factors))
    item_free = rng.normal(0.0, scale, size=(n_items, n_factors))
    if biases:  # biases start at 0
        user_free = np.hstack([user_free, np.zeros((n_users, 1))])
        item_free = np.hstack([item_free, np.zeros((n_items, 1))])

    total = bayes.burn_in + bayes.posterior_samples
    error = float(np.dot(users.data, users.data))  # with all factors 0
    log.debug(
        "Gibbs sampling: %d users x %d items, %d ratings, %d factors, %d sweeps (%d burn-in)",
        n_users,
        n_items,
        matrix.nnz,
        n_factors,
        total,
        bayes.burn_in,
    )
    for sweep in range(1, total + 1):
        started = time.perf_counter()
        with _single_threaded_blas():
            if bayes.noise_precision is None:
                noise_precision = rng.gamma(
                    NOISE_PRIOR_SHAPE + matrix.nnz / 2, 1.0 / (NOISE_PRIOR_RATE + error / 2)
                )
            else:
                noise_precision = bayes.noise_precision
            mean, precision = _sample_hyperprior(rng, user_free, bayes.hyperprior_scale)
            design, offsets = _design(item_free, biases)
            user_free, _ = _sample_rows(
                rng, users, user_pattern, design, offsets, mean, precision, noise_precision
            )
            mean, precision = _sample_hyperprior(rng, item_free, bayes.hyperprior_scale)
            design, offsets = _design(user_free, biases)
            item_free, error = _sample_rows(
                rng, items, item_pattern, design, offsets, mean, precision, noise_precision
            )
        seconds = time.perf_counter() - started
        if not math.isfinite(error):
            raise WalsrecError(
                f"the Gibbs sampler produced non-finite factors in sweep {sweep}; try a larger "
                "bayes.hyperprior_scale or a fixed bayes.noise_precision"
            )
        if history is not None:
            from walsrec.models.wals import EpochStats

            history.append(EpochStats(epoch=sweep, loss=error, seconds=seconds))
        log.debug(
            "Gibbs sweep %d/%d: squared error %.6g, noise precision %.4g (%.3f s)",
            sweep,
            total,
            error,
            noise_precision,
            seconds,
        )
        if sweep > bayes.burn_in:
            yield PosteriorSample(
                number=sweep - bayes.burn_in,
                user_factors=user_free[:, :n_factors],
                item_factors=item_free[:, :n_factors],
                user_bias=user_free[:, n_factors] if biases else None,
                item_bias=item_free[:, n_factors] if biases else None,
                global_mean=global_mean,
                noise_precision=float(noise_precision),
            )


def train_bayes(
    matrix: sp.spmatrix,
    wals: WALSConfig,
    bayes: BayesConfig,
    *,
    progress: bool = False,
    callback: Callable[[int, PosteriorSample], bool | None] | None = None,
    log: logging.Logger | None = None,
) -> WALSModel:
    """The posterior-mean model: Gibbs samples averaged and compressed into one factor model.

    Args:
        matrix: scipy.sparse [n_users, n_items] ratings.
        wals: the WALS config of the sampled model (explicit mode).
        bayes: samples, burn-in, priors and the rank of the result.
        progress: show a tqdm bar over sweeps.
        callback: called as callback(number, sample) after each averaged sample; returning
            True stops sampling there (the average so far is returned).
        log: logger; defaults to this module's.

    Returns:
        A WALSModel predicting global mean + averaged biases + compressed averaged factors. Its
        config is `wals` with n_factors set to the rank of the result (what fold-in needs);
        `history` has one EpochStats per sweep, burn-in included.
    """
    from walsrec.models.wals import WALSModel

    log = log or logger
    history: list[EpochStats] = []
    average = PosteriorMean(bayes.posterior_rank)
    total = bayes.burn_in + bayes.posterior_samples
    bar = progress_bar(progress, total=total, desc="Gibbs", unit="sweep")
    started = time.perf_counter()
    try:
        for sample in gibbs_samples(matrix, wals, bayes, history=history, log=log):
            if bar is not None:
                bar.update(len(history) - bar.n)
            average.add(sample)
            if callback is not None:
                stop = callback(sample.number, sample)
                if isinstance(stop, bool | np.bool_) and stop:
                    log.info(
                        "Gibbs sampling stopped by the callback after sample %d", sample.number
                    )
                    break
    finally:
        if bar is not None:
            bar.close()
    user_factors, item_factors, user_bias, item_bias = average.factors()
    log.info(
        "Gibbs sampling: %d samples after %d burn-in sweeps averaged into %d factors (%.1f s)",
        average.count,
        bayes.burn_in,
        user_factors.shape[1],
        time.perf_counter() - started,
    )
    return WALSModel(
        config=wals.model_copy(update={"n_factors": int(user_factors.shape[1])}),
        user_factors=np.ascontiguousarray(user_factors, dtype=np.float32),
        item_factors=np.ascontiguousarray(item_factors, dtype=np.float32),
        user_bias=None if user_bias is None else user_bias.astype(np.float32),
        item_bias=None if item_bias is None else item_bias.astype(np.float32),
        global_mean=average.global_mean,
        history=history,
    )
