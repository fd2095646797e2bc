"""Blending WALS with the EASE item-item model, as one factor model.

The blended score of user u and item i is

    (1 - w) * wals(u, i) + w * sum_{j in I_u} B[j, i]

with w = `item_item_weight`, I_u the user's training items and B the EASE weights
(walsrec.itemknn). The second term is a dot product too: the user's binary training row with
column i of B. So the blend is written as a factor model with concatenated factors,

    user = [(1 - w) x_u, w r_u],   item = [y_i, B[:, i]],

(biases scaled by 1 - w), and a `RecommenderModel` holding them scores, ranks, serves and
saves exactly like a plain WALS model: no new file format, and the registered artifact is
exactly what produced the evaluated recommendations. The price is n_items extra factors, which
is why the item-item part is for catalogues of a few thousand items.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec.errors import ConfigError, reject_unknown_keys
from walsrec.itemknn import ease_item_weights
from walsrec.model import RecommenderModel

__all__ = ["BlendConfig", "blend_model", "blended_score_fn", "binary_rows"]


@dataclass
class BlendConfig:
    """How much of the item-item model goes into the scores.

    Attributes:
        item_item_weight: w in [0, 1): the item-item share of the score; 0 is WALS alone.
        item_item_l2: the EASE ridge penalty (> 0).
        max_items: largest catalogue the item-item model is built for (dense n_items^2).
    """

    item_item_weight: float = 0.0
    item_item_l2: float = 500.0
    max_items: int = 5000

    def __post_init__(self) -> None:
        weight = self.item_item_weight
        if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 <= weight < 1:
            raise ConfigError(f"blend.item_item_weight must be in [0, 1), got {weight!r}")
        l2 = self.item_item_l2
        if isinstance(l2, bool) or not isinstance(l2, int | float) or not l2 > 0:
            raise ConfigError(f"blend.item_item_l2 must be a number > 0, got {l2!r}")
        self.item_item_weight = float(weight)
        self.item_item_l2 = float(l2)
        self.max_items = int(self.max_items)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any] | None) -> BlendConfig:
        """Build from the `blend:` section of a config; unknown keys are a ConfigError."""
        values = dict(values or {})
        reject_unknown_keys("blend", values, cls)
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """The config as a plain dict, the inverse of `from_dict`."""
        return dataclasses.asdict(self)

    @property
    def enabled(self) -> bool:
        """Whether the item-item model contributes at all."""
        return self.item_item_weight > 0


def binary_rows(matrix: sp.spmatrix) -> sp.csr_matrix:
    """float32 CSR with 1 for every stored non-zero entry: the users' item sets."""
    binary = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    binary.eliminate_zeros()
    binary.data[:] = 1.0
    return binary


def blended_score_fn(
    wals_scores: Callable[[np.ndarray], np.ndarray],
    train: sp.spmatrix,
    item_weights: np.ndarray | None,
    config: BlendConfig,
) -> Callable[[np.ndarray], np.ndarray]:
    """score_fn(users) -> [len(users), n_items] of the blend (WALS alone when disabled)."""
    if not config.enabled or item_weights is None:
        return wals_scores
    rows = binary_rows(train)
    weight = np.float32(config.item_item_weight)

    def score(users: np.ndarray) -> np.ndarray:
        item_item = np.asarray(rows[users] @ item_weights)
        return (1 - weight) * wals_scores(users) + weight * item_item

    return score


def blend_model(model: RecommenderModel, config: BlendConfig) -> RecommenderModel:
    """The model with the item-item part folded into its factors (unchanged when disabled).

    The item-item weights are fitted on `model.seen` (the training interactions). The result's
    metadata["blend"] records the config and how many leading factors are WALS's.
    """
    if not config.enabled:
        return model
    weights = ease_item_weights(model.seen, config.item_item_l2, max_items=config.max_items)
    keep = np.float32(1 - config.item_item_weight)
    rows = binary_rows(model.seen).toarray()
    user_factors = np.hstack([keep * model.user_factors, config.item_item_weight * rows])
    item_factors = np.hstack([model.item_factors, weights.T])

    def scaled(bias: np.ndarray | None) -> np.ndarray | None:
        return None if bias is None else (keep * bias).astype(np.float32)

    metadata = dict(model.metadata)
    metadata["blend"] = {**config.to_dict(), "wals_factors": model.n_factors, "method": "ease"}
    return dataclasses.replace(
        model,
        user_factors=np.ascontiguousarray(user_factors, dtype=np.float32),
        item_factors=np.ascontiguousarray(item_factors, dtype=np.float32),
        user_bias=scaled(model.user_bias),
        item_bias=scaled(model.item_bias),
        global_mean=float(keep * model.global_mean),
        metadata=metadata,
    )
