"""Evaluate the model against the popularity baseline on held-out data."""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated

import numpy as np
from zenml import log_metadata, step
from zenml.types import MarkdownString

from walsrec.config import EvaluationConfig
from walsrec.data import Dataset
from walsrec.model import RecommenderModel
from walsrec.reports import metrics_table_markdown
from walsrec.training import evaluate_model

logger = logging.getLogger(__name__)


def test_fingerprint(dataset: Dataset) -> str:
    """A hash of the test pairs in original ids: metrics compare only on the same test set."""
    if dataset.test is None:
        return ""
    test = dataset.test.tocoo()
    users = np.asarray(dataset.user_ids, dtype=str)[test.row]
    items = np.asarray(dataset.item_ids, dtype=str)[test.col]
    pairs = np.sort(np.char.add(np.char.add(users, "\t"), items))
    digest = hashlib.sha256()
    for chunk in np.array_split(pairs, max(1, len(pairs) // 100_000)):
        digest.update("\n".join(chunk.tolist()).encode())
    return digest.hexdigest()[:16]


@step
def model_evaluator(
    model: RecommenderModel, dataset: Dataset, evaluation: dict
) -> tuple[Annotated[dict, "metrics"], Annotated[MarkdownString, "metrics_table"]]:
    """Ranking metrics (and RMSE/MAE with ratings) for WALS and popularity on the test part.

    The metrics are also logged on the model version, where the promoter reads them.
    """
    k = int(EvaluationConfig.from_dict(evaluation).k)
    metrics = evaluate_model(model, dataset, k=k, part="test")
    if not metrics:
        logger.warning("no test interactions: nothing to evaluate")
    table = metrics_table_markdown(metrics) if metrics else "No test data.\n"
    logger.info("test metrics (k=%d):\n%s", k, table)
    fingerprint = test_fingerprint(dataset)
    log_metadata(
        metadata={"metrics": metrics, "test_fingerprint": fingerprint, "k": k},
        infer_model=True,
    )
    return {"metrics": metrics, "test_fingerprint": fingerprint, "k": k}, MarkdownString(table)
