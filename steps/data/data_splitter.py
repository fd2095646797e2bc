"""Split validated interactions into train / validation / test with id vocabularies."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import step

from walsrec.data import Dataset, Interactions, PreprocessConfig, SplitConfig, build_dataset

logger = logging.getLogger(__name__)


@step
def data_splitter(
    interactions: Interactions,
    split: SplitConfig,
    preprocess: PreprocessConfig,
    test_interactions: Interactions | None = None,
) -> Annotated[Dataset, "dataset"]:
    """Build the dataset: filter by minimum counts, split, index ids.

    Args:
        interactions: the training input (or all data when the split carves out the test).
        split: the `split:` section (method random/temporal/file, ratios, seed).
        preprocess: the `preprocess:` section (minimum interactions per user and item).
        test_interactions: the user-supplied test file, for `split.method: file`.

    Returns:
        The dataset; test rows never reach `dataset.train` or `dataset.validation`.
    """
    dataset = build_dataset(
        interactions,
        split=SplitConfig.from_dict(split),
        preprocess=PreprocessConfig.from_dict(preprocess),
        test_interactions=test_interactions,
    )
    logger.info("dataset: %s", dataset.stats)
    return dataset
