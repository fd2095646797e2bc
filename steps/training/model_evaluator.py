"""Evaluate the model against the popularity baseline on held-out data."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import step
from zenml.types import MarkdownString

from walsrec.config import EvaluationConfig
from walsrec.data import Dataset
from walsrec.evaluation.reports import metrics_table_markdown
from walsrec.models.recommender import RecommenderModel
from walsrec.training import evaluate_model

logger = logging.getLogger(__name__)


@step  # a function of its inputs: served from the cache when the model and test part are
def model_evaluator(
    model: RecommenderModel, dataset: Dataset, evaluation: EvaluationConfig
) -> tuple[Annotated[dict, "metrics"], Annotated[MarkdownString, "metrics_table"]]:
    """Ranking metrics (and RMSE/MAE with ratings) for WALS and popularity on the test part.

    Returns the metrics with the test set's fingerprint and `k` (what `model_promoter` logs
    on the step, the run and the model version, and compares with production), and the
    metrics as a table. The step depends on its inputs only, so an unchanged model and test
    part are served from the cache; the promoter, which always runs, records them.
    """
    k = int(EvaluationConfig.from_dict(evaluation).k)
    metrics = evaluate_model(model, dataset, k=k, part="test")
    if not metrics:
        logger.warning("no test interactions: nothing to evaluate")
    table = metrics_table_markdown(metrics) if metrics else "No test data.\n"
    logger.info("test metrics (k=%d):\n%s", k, table)
    result = {"metrics": metrics, "test_fingerprint": dataset.test_fingerprint(), "k": k}
    return result, MarkdownString(table)
