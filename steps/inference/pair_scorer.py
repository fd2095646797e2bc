"""Predicted scores for a file of (user, item) pairs."""

from __future__ import annotations

import logging
from typing import Annotated

import pandas as pd
from zenml import log_metadata, step
from zenml.integrations.pandas.materializers.pandas_materializer import PandasMaterializer

from steps.data.data_loader import loader_options
from walsrec.data import load_source
from walsrec.inference.recommend import predict_pairs, write_table
from walsrec.models.recommender import RecommenderModel

logger = logging.getLogger(__name__)


# The materializer is named, not looked up: the command does not activate ZenML's pandas
# integration (cli/runs.py).
@step(enable_cache=False, output_materializers={"predictions": PandasMaterializer})
def pair_scorer(
    model: RecommenderModel, pairs_path: str, data: dict, output_path: str | None = None
) -> Annotated[pd.DataFrame, "predictions"]:
    """Score each (user, item) pair of `pairs_path`, columns `user_id,item_id,prediction`.

    Pairs whose user or item the model never saw get no prediction; their count is logged and
    recorded as metadata, never dropped silently.
    """
    pairs = load_source(pairs_path, **loader_options(data)).frame
    predictions, unknown = predict_pairs(model, pairs)
    if unknown:
        logger.warning(
            "%d of %d pairs have a user or item unknown to the model: not scored",
            unknown,
            len(pairs),
        )
    if output_path:
        write_table(predictions, output_path)
        logger.info("wrote %d predictions to %s", len(predictions), output_path)
    log_metadata(metadata={"pairs": len(pairs), "unknown_pairs": unknown}, infer_artifact=True)
    return predictions
