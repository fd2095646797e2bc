"""Blending WALS with an item-item model.

The blended score of user u and item i is

    (1 - w) * wals(u, i) + w * sum_{j in I_u} S[j, i]

with w = `item_item_weight`, I_u the user's training items and S a sparse item-item matrix
(walsrec.models.itemknn): dense EASE on catalogues up to `max_items`, each item's `neighbors`
nearest items above (`method: auto`). The model keeps the WALS factors as they are and S beside them
(`RecommenderModel.item_item`, `blend_weight`); `walsrec.models.recommender.blend_scores` is the
formula, used by evaluation, batch inference and serving alike, so the registered artifact is
exactly what produced the evaluated recommendations, and a new user is folded into the WALS part
only.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from typing import ClassVar, Literal, get_args

import numpy as np
import scipy.sparse as sp
from pydantic import Field

from walsrec.config import _Section
from walsrec.models.itemknn import ease_item_weights, knn_item_weights
from walsrec.models.recommender import RecommenderModel, binary_rows, blend_scores

__all__ = [
    "BLEND_METHODS",
    "BlendConfig",
    "binary_rows",
    "blend_model",
    "blended_score_fn",
    "item_item_matrix",
    "resolve_method",
]

logger = logging.getLogger(__name__)

BlendMethod = Literal["auto", "ease", "knn"]
BLEND_METHODS = get_args(BlendMethod)
# The keys each item-item method reads; the tuning objective drops the others from its search.
METHOD_KEYS = {"ease": ("item_item_l2",), "knn": ("neighbors", "shrinkage")}


class BlendConfig(_Section):
    """How much of which item-item model goes into the scores.

    Attributes:
        item_item_weight: w in [0, 1): the item-item share of the score; 0 is WALS alone.
        method: "auto" (EASE up to `max_items` items, kNN above), "ease" (left out above
            `max_items`) or "knn".
        item_item_l2: the EASE ridge penalty (> 0).
        neighbors: kNN: the neighbours kept per item (memory: n_items * neighbors entries).
        shrinkage: kNN: added to the cosine's denominator (>= 0).
        max_items: the largest catalogue dense EASE is built for (n_items^2 floats, and an
            n_items^3 inverse per fit).
    """

    section: ClassVar[str] = "blend"
    item_item_weight: float = Field(default=0.0, ge=0.0, lt=1.0)
    item_item_l2: float = Field(default=500.0, gt=0.0, allow_inf_nan=False)
    method: BlendMethod = "auto"
    neighbors: int = Field(default=100, ge=1)
    shrinkage: float = Field(default=10.0, ge=0.0, allow_inf_nan=False)
    max_items: int = Field(default=3000, ge=0)

    @property
    def enabled(self) -> bool:
        """Whether the item-item model contributes at all."""
        return self.item_item_weight > 0


def resolve_method(config: BlendConfig, n_items: int) -> tuple[str | None, str]:
    """The item-item method used for a catalogue of `n_items`, or None and why not.

    Returns:
        ("ease" | "knn", "") or (None, the reason the item-item part is left out).
    """
    if config.method == "knn" or (config.method == "auto" and n_items > config.max_items):
        return "knn", ""
    if n_items <= config.max_items:
        return "ease", ""
    return None, (
        f"blend.method ease needs a dense {n_items} x {n_items} matrix, more than "
        f"blend.max_items={config.max_items}: the item-item part is left out (blend.method "
        "auto or knn builds a sparse one)"
    )


def item_item_matrix(train: sp.spmatrix, config: BlendConfig) -> sp.csr_matrix | None:
    """The item-item matrix S of the blend fitted on `train`, or None when it is left out.

    Raises:
        ConfigError: an invalid config value.
    """
    method, reason = resolve_method(config, train.shape[1])
    if method is None:
        logger.warning("%s", reason)
        return None
    if method == "ease":
        weights = ease_item_weights(train, config.item_item_l2, max_items=config.max_items)
        return sp.csr_matrix(weights)
    return knn_item_weights(train, config.neighbors, config.shrinkage)


def blended_score_fn(
    wals_scores: Callable[[np.ndarray], np.ndarray],
    train: sp.spmatrix,
    item_item: sp.spmatrix | None,
    config: BlendConfig,
    weighted_neighbourhood: np.ndarray | None = None,
) -> Callable[[np.ndarray], np.ndarray]:
    """score_fn(users) -> [len(users), n_items] of the blend (WALS alone when disabled).

    `weighted_neighbourhood`: `neighbourhood_scores(train, item_item, item_item_weight)`, when
    the caller scores the same training matrix many times (every epoch of a tuning trial).
    """
    if not config.enabled or item_item is None:
        return wals_scores
    if weighted_neighbourhood is not None:
        keep = np.float32(1.0 - config.item_item_weight)
        weighted = weighted_neighbourhood

        def cached(users: np.ndarray) -> np.ndarray:
            # blend_scores's formula, rounded the same way, with rows @ item_item (times the
            # weight) computed once and no temporary of the block's size.
            scores = np.asarray(wals_scores(users), dtype=np.float32)
            scores *= keep
            scores += weighted[users]
            return scores

        return cached

    rows = binary_rows(train)
    item_item = sp.csr_matrix(item_item, dtype=np.float32)

    def score(users: np.ndarray) -> np.ndarray:
        return blend_scores(wals_scores(users), rows[users], item_item, config.item_item_weight)

    return score


# Largest users x items item-item part kept in memory between epochs (float32 entries).
_MAX_CACHED_NEIGHBOURHOOD = 50_000_000


def neighbourhood_scores(
    train: sp.spmatrix, item_item: sp.spmatrix | None, weight: float
) -> np.ndarray | None:
    """float32 [n_users, n_items]: every user's weighted item-item part,
    `weight * (binary_rows(train) @ item_item)`.

    It does not change while WALS trains, so a tuning trial computes it once instead of every
    epoch. None when there is no item-item part or it would hold more than 5 * 10^7 entries
    (the score function then computes it per block of users).
    """
    if item_item is None or train.shape[0] * train.shape[1] > _MAX_CACHED_NEIGHBOURHOOD:
        return None
    rows = binary_rows(train)
    weighted = (rows @ sp.csr_matrix(item_item, dtype=np.float32)).toarray()
    weighted *= np.float32(weight)
    return weighted


def blend_model(model: RecommenderModel, config: BlendConfig) -> RecommenderModel:
    """The model with the item-item part beside its factors (unchanged when disabled or left out).

    The item-item matrix is fitted on `model.seen` (the training interactions). The result's
    metadata["blend"] records the config, the method used and the matrix's stored entries.
    """
    if not config.enabled:
        return model
    item_item = item_item_matrix(model.seen, config)
    if item_item is None:
        return model
    method, _ = resolve_method(config, model.n_items)
    metadata = dict(model.metadata)
    metadata["blend"] = {
        **config.to_dict(),
        "method_used": method,
        "item_item_nnz": int(item_item.nnz),
    }
    return dataclasses.replace(
        model, item_item=item_item, blend_weight=config.item_item_weight, metadata=metadata
    )
