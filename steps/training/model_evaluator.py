"""Evaluate the model against the popularity baseline on held-out data."""

from __future__ import annotations

import logging
from typing import Annotated

import numpy as np
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
    config = EvaluationConfig.from_dict(evaluation)
    k = int(config.k)
    metrics = evaluate_model(model, dataset, k=k, part="test", max_users=config.max_users)
    if not metrics:
        logger.warning("no test interactions: nothing to evaluate")
    table = metrics_table_markdown(metrics) if metrics else "No test data.\n"
    logger.info("test metrics (k=%d):\n%s", k, table)
    fingerprint = dataset.test_fingerprint()
    test_users = int(np.count_nonzero(np.diff(dataset.test.indptr))) if metrics else 0
    if config.max_users is not None and test_users > config.max_users:
        # A sample is comparable only with the same sample: same test set, same size.
        fingerprint = f"{fingerprint}/users={config.max_users}"
        logger.info("evaluated a sample of %d of the %d test users", config.max_users, test_users)
    result = {"metrics": metrics, "test_fingerprint": fingerprint, "k": k}
    return result, MarkdownString(table)
