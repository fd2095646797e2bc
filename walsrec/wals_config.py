"""WALS's hyperparameters, `WALSConfig`: a plain dataclass without TensorFlow.

It lives apart from `walsrec.wals` (the TensorFlow solver, which re-exports it) so that
inference code (the NumPy fold-in in `walsrec.fold_in`, the model class, serving) reads the
same defaults and checks without importing TensorFlow.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from walsrec.errors import ConfigError, reject_unknown_keys

__all__ = ["WALSConfig"]

MODES = ("implicit", "explicit")
REGULARIZATION_SCALINGS = ("none", "count")
OBSERVED_WEIGHTINGS = ("constant", "linear", "log", "item_power", "proportional")
DTYPES = ("float32", "float64")
SOLVERS = ("cholesky", "cg")
KERNELS = ("auto", "fused", "graph")


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


@dataclass
class WALSConfig:
    """Hyperparameters of WALS.

    Attributes:
        n_factors: dimension of the user and item factors.
        regularization: L2 penalty on the factors (and biases); must be > 0, which also keeps
            every least-squares system positive definite.
        regularization_scaling: "none", or "count" to multiply the penalty of a row by its number
            of observed entries (ALS-WR); rows with no entries use 1.
        mode: "implicit" (observed entries have target 1, a preference) or "explicit" (the target
            is the rating).
        unobserved_weight: weight of the unobserved entries, pulled towards a prediction of 0;
            0 fits the observed entries only (plain ALS for rating prediction).
        observed_weighting: confidence f(r) added to `unobserved_weight` for an observed entry:
            "constant": alpha; "linear": alpha * r; "log": alpha * log(1 + r / epsilon);
            "proportional": alpha * r - unobserved_weight, so that the total confidence is
            alpha * r (implicit's and Hu et al.'s c = alpha r: a low rating can weigh less than
            an unobserved entry; alpha * r must stay > 0, which r > 0 ensures);
            "item_power": alpha * (1 / n_i) ** item_weight_exponent with n_i the item's number of
            observed entries in training.
        alpha: scale of the confidence f(r).
        epsilon: scale of the ratings in the "log" weighting.
        item_weight_exponent: exponent of the "item_power" weighting.
        use_biases: learn a user bias, an item bias and a global mean (in explicit mode the mean
            rating; 0 in implicit mode).
        epochs: number of alternating (users, then items) passes.
        init_scale: initial factors are drawn from N(0, init_scale / sqrt(n_factors)).
        seed: seed of the numpy generator drawing the initial factors.
        max_chunk_elements: padded elements per solve chunk, which bounds memory (about
            max_chunk_elements * n_factors numbers per chunk). A row counts as
            max(its padded length, n_factors) elements, since its normal-equation matrix is as
            large as that many gathered factors.
        dtype: "float32" or "float64" for the factors and solves.
        solver: "cholesky" solves each row's normal equations exactly (batched Gram matrices,
            then Cholesky); "cg" runs `cg_steps` conjugate-gradient steps per row, warm-started
            from the previous epoch's factors, without forming the matrices: several times
            faster at large scale, and after a few epochs as good (the exact solve is the
            limit of CG).
        cg_steps: conjugate-gradient steps per row and half-epoch (solver "cg").
        jit_compile: compile the chunk solves with XLA (one compilation per chunk shape, a few
            dozen per side, paid in the first epoch); false runs plain TensorFlow ops.
        parallel_chunks: chunks solved concurrently, each by single-threaded ops; 0 means one
            per CPU core. 1 solves one chunk at a time with TensorFlow's own op threading.
        kernel: how a half-step runs. "fused": one TensorFlow custom op (walsrec/native) solves
            every row straight from the sparse arrays on TensorFlow's intra-op threads, several
            times faster and leaner than "graph"; it is compiled on first use (needs a C++
            compiler). "graph": standard TensorFlow ops over padded fixed-shape chunks
            (max_chunk_elements, jit_compile and parallel_chunks apply to it only). "auto":
            fused if it builds, else graph with a warning.
    """

    n_factors: int = 64
    regularization: float = 0.05
    regularization_scaling: str = "none"
    mode: str = "implicit"
    unobserved_weight: float = 1.0
    observed_weighting: str = "linear"
    alpha: float = 10.0
    epsilon: float = 1.0
    item_weight_exponent: float = 0.08
    use_biases: bool = False
    epochs: int = 15
    init_scale: float = 0.1
    seed: int = 42
    max_chunk_elements: int = 262144
    dtype: str = "float32"
    solver: str = "cholesky"
    cg_steps: int = 3
    jit_compile: bool = True
    parallel_chunks: int = 0
    kernel: str = "auto"

    def __post_init__(self) -> None:
        self.validate()
        # YAML gives 1 for 1.0 and numpy gives np.float64: store plain Python types so that
        # to_dict() is JSON-able and equal configs compare equal.
        for config_field in dataclasses.fields(self):
            value = getattr(self, config_field.name)
            if config_field.type == "float":
                setattr(self, config_field.name, float(value))
            elif config_field.type == "int":
                setattr(self, config_field.name, int(value))

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> WALSConfig:
        """Build and validate a config from a mapping (e.g. a YAML section).

        Args:
            values: field name -> value; missing fields keep their defaults.

        Returns:
            The validated config.

        Raises:
            ConfigError: `values` is not a mapping, has unknown keys, or a value is invalid.
        """
        if not isinstance(values, Mapping):
            raise ConfigError(
                f"WALS config must be a mapping of key -> value, got {type(values).__name__}"
            )
        reject_unknown_keys("WALS config", values, cls)
        return cls(**dict(values))

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict (JSON- and YAML-able), the inverse of `from_dict`."""
        return dataclasses.asdict(self)

    def validate(self) -> None:
        """Check every field's type and range.

        Raises:
            ConfigError: naming the first invalid key, its value and what is allowed.
        """
        _check_int("n_factors", self.n_factors, minimum=1)
        _check_number("regularization", self.regularization, positive=True)
        _check_choice(
            "regularization_scaling", self.regularization_scaling, REGULARIZATION_SCALINGS
        )
        _check_choice("mode", self.mode, MODES)
        _check_number("unobserved_weight", self.unobserved_weight)
        _check_choice("observed_weighting", self.observed_weighting, OBSERVED_WEIGHTINGS)
        _check_number("alpha", self.alpha)
        _check_number("epsilon", self.epsilon, positive=True)
        _check_number("item_weight_exponent", self.item_weight_exponent, allow_negative=True)
        if not isinstance(self.use_biases, bool):
            raise ConfigError(f"use_biases must be true or false, got {self.use_biases!r}")
        _check_int("epochs", self.epochs, minimum=1)
        _check_number("init_scale", self.init_scale, positive=True)
        _check_int("seed", self.seed, minimum=0)
        _check_int("max_chunk_elements", self.max_chunk_elements, minimum=1)
        _check_choice("dtype", self.dtype, DTYPES)
        _check_choice("solver", self.solver, SOLVERS)
        _check_int("cg_steps", self.cg_steps, minimum=1)
        if not isinstance(self.jit_compile, bool):
            raise ConfigError(f"jit_compile must be true or false, got {self.jit_compile!r}")
        _check_int("parallel_chunks", self.parallel_chunks, minimum=0)
        _check_choice("kernel", self.kernel, KERNELS)
        if self.alpha == 0 and self.unobserved_weight == 0:
            raise ConfigError(
                "alpha and unobserved_weight are both 0, so every entry has weight 0 and nothing "
                "is learned; set alpha > 0 or unobserved_weight > 0"
            )


def _check_int(key: str, value: Any, *, minimum: int) -> None:
    # bool is an int subclass; `n_factors: true` in a YAML file is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")


def _check_number(
    key: str, value: Any, *, positive: bool = False, allow_negative: bool = False
) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise ConfigError(f"{key} must be a number, got {value!r}")
    if not math.isfinite(value):
        raise ConfigError(f"{key} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{key} must be > 0, got {value!r}")
    if not positive and not allow_negative and value < 0:
        raise ConfigError(f"{key} must be >= 0, got {value!r}")


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        allowed = ", ".join(repr(choice) for choice in choices)
        raise ConfigError(f"{key} must be one of {allowed}, got {value!r}")
