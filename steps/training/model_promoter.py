"""Record the evaluation and promote the new model version to production when it earns it."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from zenml import get_step_context, step
from zenml.client import Client
from zenml.enums import MetadataResourceTypes
from zenml.models import RunMetadataResource
from zenml.types import HTMLString

from registry.versions import promote_if_better
from walsrec.config import PromotionConfig
from walsrec.evaluation.reports import model_versions_html

logger = logging.getLogger(__name__)

LOWER_IS_BETTER = ("rmse", "mae")

# The newest versions the comparison plot shows.
_PLOTTED_VERSIONS = 30
# Charted in the comparison plot when computed (every ranking metric at the configured k).
_PLOTTED_METRICS = ("ndcg", "precision", "recall", "map", "hit_rate", "coverage", "rmse", "mae")


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


def _same_recommender_as(model_version: Any) -> int | None:
    """The oldest other version of the model holding this version's `recommender` artifact
    (linked, not copied: the trainer was served from the cache), or None.

    The artifact's links are read oldest first, a few at a time: the first one to another
    version of this model is the answer, so the lookup costs the same two or three queries
    however many cached reruns have linked the artifact since."""
    recommender = model_version.get_model_artifact("recommender")
    if recommender is None:
        return None
    client = Client()
    page = 1
    while True:
        links = client.list_model_version_artifact_links(
            artifact_version_id=recommender.id, sort_by="asc:created", page=page, size=5
        )
        for link in links.items:
            if link.model_version == model_version.id:
                continue
            other = client.get_model_version(model_version_name_or_number_or_id=link.model_version)
            if other.model.id == model_version.model.id:
                return other.number
        if page >= links.total_pages:
            return None
        page += 1


def _comparison_rows(model_version: Any, evaluation: dict) -> list[dict]:
    """The model's newest versions with their logged metrics (this run's from `evaluation`)."""
    page = Client().list_model_versions(
        model=model_version.model.id, sort_by="desc:number", size=_PLOTTED_VERSIONS
    )
    rows = []
    for version in reversed(page.items):
        current = version.id == model_version.id
        logged = evaluation if current else version.run_metadata
        metrics = ((logged.get("metrics") or {}) if isinstance(logged, dict) else {}).get("wals")
        if not metrics:
            continue  # a version whose run died before evaluation
        rows.append(
            {
                "version": version.number,
                "stage": version.stage,
                "metrics": metrics,
                "comparable": logged.get("test_fingerprint") == evaluation["test_fingerprint"],
                "current": current,
            }
        )
    return rows


def _plotted_metrics(metrics: dict) -> list[str]:
    wals = metrics.get("wals") or {}
    return [name for name in wals if name.split("@")[0] in _PLOTTED_METRICS]


def _record_evaluation(evaluation: dict) -> Any:
    """Log the evaluation as metadata of this step, its pipeline run (both shown by the
    open-source dashboard) and the run's model version (where promotion reads them), with
    `same_recommender_as` when the trainer was served from the cache. Returns the version."""
    context = get_step_context()
    metadata: dict[str, Any] = dict(evaluation)
    resources = [
        RunMetadataResource(id=context.step_run.id, type=MetadataResourceTypes.STEP_RUN),
        RunMetadataResource(id=context.pipeline_run.id, type=MetadataResourceTypes.PIPELINE_RUN),
    ]
    model_version = context.model_version
    if model_version is not None:
        resources.append(
            RunMetadataResource(id=model_version.id, type=MetadataResourceTypes.MODEL_VERSION)
        )
        same = _same_recommender_as(model_version)
        if same is not None:
            metadata["same_recommender_as"] = same
            logger.info(
                "model version %s holds the recommender of version %s (training was served "
                "from the cache; the artifact is linked, not copied)",
                model_version.number,
                same,
            )
    Client().create_run_metadata(
        metadata=metadata, resources=resources, publisher_step_id=context.step_run.id
    )
    return model_version


@step(enable_cache=False)  # depends on the registry's current production version
def model_promoter(
    evaluation: dict, promotion: PromotionConfig
) -> tuple[Annotated[bool, "promoted"], Annotated[HTMLString, "model_versions"]]:
    """Record this run's evaluation, then set its model version to production if it beats
    popularity and production; chart the model's versions on their metrics.

    The evaluation is logged on this step, the run and the model version first (a version's
    metrics are on it before it can be production). Production is then read, compared and
    replaced under the store's promotion lock (registry/versions.py), so of two runs
    finishing together the better one ends in production. `model_versions` is drawn after
    the decision, so it shows this version's new stage.
    """
    config = PromotionConfig.from_dict(promotion)
    model_version = _record_evaluation(evaluation)
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
    metrics = evaluation.get("metrics") or {}
    plot = "<html><body><p>This run has no model version.</p></body></html>"
    if model_version is not None:
        plot = model_versions_html(
            _comparison_rows(model_version, evaluation),
            _plotted_metrics(metrics),
            metrics.get("popularity") or {},
        )
    return result.promoted, HTMLString(plot)
