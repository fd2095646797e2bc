"""WALS's hyperparameters, `WALSConfig`: the `wals:` section as a strict pydantic model,
without TensorFlow.

It lives apart from `walsrec.models.wals` (the TensorFlow solver, which re-exports it) so that
inference code (the NumPy fold-in in `walsrec.models.fold_in`, the model class, serving) reads the
same defaults and checks without importing TensorFlow. A saved model keeps its config as the
plain dict of `to_dict()` (the same keys and JSON as when this was a dataclass).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union, get_args

import numpy as np
from pydantic import Field, create_model, model_validator

from walsrec.config import _Section, config_error
from walsrec.errors import ConfigError
from walsrec.profile import AUTO, AUTO_KEYS

__all__ = ["WALSConfig", "WALSParameters"]

Mode = Literal["implicit", "explicit"]
RegularizationScaling = Literal["none", "count"]
ObservedWeighting = Literal["constant", "linear", "log", "item_power", "proportional"]
Dtype = Literal["float32", "float64"]
Solver = Literal["cholesky", "cg"]
Kernel = Literal["auto", "fused", "graph"]
MODES = get_args(Mode)
REGULARIZATION_SCALINGS = get_args(RegularizationScaling)
OBSERVED_WEIGHTINGS = get_args(ObservedWeighting)
DTYPES = get_args(Dtype)
SOLVERS = get_args(Solver)
KERNELS = get_args(Kernel)


# --------------------------------------------------------------------------------------------
# Configuration
# --------------------------------------------------------------------------------------------


class WALSConfig(_Section):
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

    section: ClassVar[str] = "wals"
    n_factors: int = Field(default=64, ge=1)
    regularization: float = Field(default=0.05, gt=0.0, allow_inf_nan=False)
    regularization_scaling: RegularizationScaling = "none"
    mode: Mode = "implicit"
    unobserved_weight: float = Field(default=1.0, ge=0.0, allow_inf_nan=False)
    observed_weighting: ObservedWeighting = "linear"
    alpha: float = Field(default=10.0, ge=0.0, allow_inf_nan=False)
    epsilon: float = Field(default=1.0, gt=0.0, allow_inf_nan=False)
    item_weight_exponent: float = Field(default=0.08, allow_inf_nan=False)
    use_biases: bool = False
    epochs: int = Field(default=15, ge=1)
    init_scale: float = Field(default=0.1, gt=0.0, allow_inf_nan=False)
    seed: int = Field(default=42, ge=0)
    max_chunk_elements: int = Field(default=262144, ge=1)
    dtype: Dtype = "float32"
    solver: Solver = "cholesky"
    cg_steps: int = Field(default=3, ge=1)
    jit_compile: bool = True
    parallel_chunks: int = Field(default=0, ge=0)
    kernel: Kernel = "auto"

    @model_validator(mode="after")
    def _something_is_learned(self) -> WALSConfig:
        if self.alpha == 0 and self.unobserved_weight == 0:
            raise config_error(
                "alpha and unobserved_weight are both 0, so every entry has weight 0 and nothing "
                "is learned; set alpha > 0 or unobserved_weight > 0"
            )
        return self


class _WALSSection(_Section):
    section: ClassVar[str] = "wals"


def _auto_allowed(config_class: type[_Section], name: str) -> type[_Section]:
    """A model with `config_class`'s fields and checks (its cross-key rules aside), where a key
    of `AUTO_KEYS` may also be `auto`."""
    fields: dict[str, Any] = {}
    for key, info in config_class.model_fields.items():
        if key in AUTO_KEYS:
            checked = info.annotation
            if info.metadata:  # the bounds (ge, gt, ...) apply to the value, not to `auto`
                checked = Annotated[(info.annotation, *info.metadata)]
            fields[key] = (Union[Literal[AUTO], checked], info.default)  # noqa: UP007
        else:
            fields[key] = (info.annotation, info)
    return create_model(name, __base__=_WALSSection, __module__=__name__, **fields)


WALSParameters = _auto_allowed(WALSConfig, "WALSParameters")
"""The `wals:` section as a config file holds it (the trainer's step parameter): every
WALSConfig key with its checks, and the keys of `walsrec.profile.AUTO_KEYS` may be `auto`,
chosen from the data profile by `walsrec.profile.resolve_auto` before the WALSConfig is built."""


def _check_int(key: str, value: Any, *, minimum: int) -> None:
    """Raise ConfigError unless `value` is an integer >= minimum (`walsrec.models.wals`'s thread
    settings, which are arguments rather than config keys)."""
    # bool is an int subclass; `intra_op=True` is a mistake, not 1.
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ConfigError(f"{key} must be an integer >= {minimum}, got {value!r}")
