"""A prediction for every test pair (rating prediction), unknown users and items included."""

from __future__ import annotations

import logging
from typing import Annotated

import numpy as np
import pandas as pd
from zenml import log_metadata, step
from zenml.integrations.pandas.materializers.pandas_materializer import PandasMaterializer

from walsrec.data import Dataset, Interactions
from walsrec.inference.recommend import write_table
from walsrec.models.recommender import RecommenderModel
from walsrec.tuning import predict_every_pair

logger = logging.getLogger(__name__)


# The materializer is named, not looked up: the command does not activate ZenML's pandas
# integration (cli/runs.py).
@step(enable_cache=False, output_materializers={"test_predictions": PandasMaterializer})
def test_pair_predictor(
    model: RecommenderModel,
    dataset: Dataset,
    output_path: str,
    test_interactions: Interactions | None = None,
) -> Annotated[pd.DataFrame, "test_predictions"]:
    """Write `user_id,item_id,prediction` for every test pair to `output_path`.

    The pairs are the test file's rows when one was given (so pairs the model can't know still
    get the global mean plus any known bias), else the dataset's test part.
    """
    if test_interactions is not None:
        pairs = test_interactions.frame[["user_id", "item_id"]]
    else:
        test = dataset.test.tocoo() if dataset.test is not None else None
        rows = test.row if test is not None else np.zeros(0, dtype=np.int64)
        cols = test.col if test is not None else np.zeros(0, dtype=np.int64)
        pairs = pd.DataFrame({"user_id": dataset.user_ids[rows], "item_id": dataset.item_ids[cols]})
    predictions = predict_every_pair(model, pairs)
    write_table(predictions, output_path)
    logger.info("wrote %d test-pair predictions to %s", len(predictions), output_path)
    log_metadata(metadata={"pairs": len(predictions), "path": output_path}, infer_artifact=True)
    return predictions
