"""Evaluate the model against the popularity baseline on held-out data."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from zenml import get_step_context, step
from zenml.client import Client
from zenml.enums import MetadataResourceTypes
from zenml.models import RunMetadataResource
from zenml.types import HTMLString, MarkdownString

from walsrec.config import EvaluationConfig
from walsrec.data import Dataset
from walsrec.evaluation.reports import metrics_table_markdown, model_versions_html
from walsrec.models.recommender import RecommenderModel
from walsrec.training import evaluate_model

logger = logging.getLogger(__name__)


# The newest versions the comparison plot shows.
_PLOTTED_VERSIONS = 30
# Charted in the comparison plot when computed (every ranking metric at the configured k).
_PLOTTED_METRICS = ("ndcg", "precision", "recall", "map", "hit_rate", "coverage", "rmse", "mae")


def _same_recommender_as(model_version: Any, recommender_id: Any) -> int | None:
    """The oldest other version of the model holding the same `recommender` artifact (linked,
    not copied: the trainer was served from the cache), or None."""
    client = Client()
    links = client.list_model_version_artifact_links(artifact_version_id=recommender_id, size=50)
    numbers = []
    for other_id in {link.model_version for link in links.items} - {model_version.id}:
        other = client.get_model_version(model_version_name_or_number_or_id=other_id)
        if other.model.id == model_version.model.id:
            numbers.append(other.number)
    return min(numbers) if numbers else None


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


@step(enable_cache=False)  # the metrics go on this run and its model version, cached or not
def model_evaluator(
    model: RecommenderModel, dataset: Dataset, evaluation: EvaluationConfig
) -> tuple[
    Annotated[dict, "metrics"],
    Annotated[MarkdownString, "metrics_table"],
    Annotated[HTMLString, "model_versions"],
]:
    """Ranking metrics (and RMSE/MAE with ratings) for WALS and popularity on the test part.

    The metrics are logged as metadata of this step, its pipeline run (both shown by the
    open-source dashboard) and the run's model version (where the promoter reads them). When
    the trainer was served from the cache, the version's `recommender` is the artifact an
    earlier version already holds (linked, not copied): `same_recommender_as` names that
    version in the metadata. `model_versions` charts the model's versions on their metrics.
    """
    k = int(EvaluationConfig.from_dict(evaluation).k)
    metrics = evaluate_model(model, dataset, k=k, part="test")
    if not metrics:
        logger.warning("no test interactions: nothing to evaluate")
    table = metrics_table_markdown(metrics) if metrics else "No test data.\n"
    logger.info("test metrics (k=%d):\n%s", k, table)
    result = {"metrics": metrics, "test_fingerprint": dataset.test_fingerprint(), "k": k}

    context = get_step_context()
    metadata: dict[str, Any] = dict(result)
    resources = [
        RunMetadataResource(id=context.step_run.id, type=MetadataResourceTypes.STEP_RUN),
        RunMetadataResource(id=context.pipeline_run.id, type=MetadataResourceTypes.PIPELINE_RUN),
    ]
    model_version = context.model_version
    plot = "<html><body><p>This run has no model version.</p></body></html>"
    if model_version is not None:
        resources.append(
            RunMetadataResource(id=model_version.id, type=MetadataResourceTypes.MODEL_VERSION)
        )
        same = _same_recommender_as(model_version, context.inputs["model"][0].id)
        if same is not None:
            metadata["same_recommender_as"] = same
            logger.info(
                "model version %s holds the recommender of version %s (training was served "
                "from the cache; the artifact is linked, not copied)",
                model_version.number,
                same,
            )
        plot = model_versions_html(
            _comparison_rows(model_version, result),
            _plotted_metrics(metrics),
            (metrics or {}).get("popularity") or {},
        )
    Client().create_run_metadata(
        metadata=metadata, resources=resources, publisher_step_id=context.step_run.id
    )
    return result, MarkdownString(table), HTMLString(plot)
