"""Promote the new model version to production when it earns it."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import get_step_context, step
from zenml.client import Client

from registry.versions import promote_if_better
from walsrec.config import PromotionConfig

logger = logging.getLogger(__name__)

LOWER_IS_BETTER = ("rmse", "mae")


def is_better(candidate: float, incumbent: float, metric: str, min_improvement: float) -> bool:
    """Whether `candidate` beats `incumbent` on `metric` by at least `min_improvement`."""
    if metric.split("@")[0] in LOWER_IS_BETTER:
        return candidate < incumbent - min_improvement
    return candidate > incumbent + min_improvement


def decide_promotion(
    evaluation: dict, production: dict | None, metric: str, min_improvement: float = 0.0
) -> tuple[bool, str]:
    """Decide from this run's evaluation and the production version's logged metadata.

    The candidate must beat popularity on `metric` (for ranking metrics) and the current
    production version. A production version evaluated on another test set (a different
    fingerprint) can't be compared: the candidate trained on the newer data wins if it beats
    popularity, and the reason says so.

    Returns:
        (promote, reason), the reason written for humans.
    """
    metrics = evaluation.get("metrics") or {}
    ours = metrics.get("wals", {}).get(metric)
    if ours is None:
        available = sorted(metrics.get("wals", {}))
        return False, f"metric {metric!r} was not computed (available: {available})"
    baseline = metrics.get("popularity", {}).get(metric)
    if baseline is not None and not is_better(ours, baseline, metric, 0.0):
        return False, f"{metric} {ours:.4f} does not beat popularity ({baseline:.4f})"
    if production is None:
        return True, f"{metric} {ours:.4f} beats popularity; no production version yet"
    incumbent = (production.get("metrics") or {}).get("wals", {}).get(metric)
    if incumbent is None:
        return True, f"{metric} {ours:.4f}; production version has no {metric} to compare"
    if production.get("test_fingerprint") != evaluation.get("test_fingerprint"):
        return True, (
            f"{metric} {ours:.4f} beats popularity; production was evaluated on another test "
            "set, so the model trained on the newer data is promoted"
        )
    if is_better(ours, incumbent, metric, min_improvement):
        return True, f"{metric} {ours:.4f} beats production ({incumbent:.4f})"
    return False, f"{metric} {ours:.4f} does not beat production ({incumbent:.4f})"


@step(enable_cache=False)  # depends on the registry's current production version
def model_promoter(evaluation: dict, promotion: PromotionConfig) -> Annotated[bool, "promoted"]:
    """Set this run's model version to production if it beats popularity and production.

    Production is read, compared and replaced under the store's promotion lock
    (registry/versions.py), so of two runs finishing together the better one ends in
    production.
    """
    config = PromotionConfig.from_dict(promotion)
    model = get_step_context().model
    candidate = Client().get_model_version(model.name, model.id)
    result = promote_if_better(
        model.name,
        candidate,
        lambda production: decide_promotion(
            evaluation, production, config.metric, float(config.min_improvement)
        ),
    )
    logger.info(
        "%s model version %s: %s",
        "Promoted" if result.promoted else "Not promoting",
        model.version,
        result.reason,
    )
    return result.promoted
