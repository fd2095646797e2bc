"""Profile the training interactions: the kind of feedback, sizes, values and activity."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import log_metadata, step

from walsrec.data import Dataset
from walsrec.profile import DataProfile, profile_dataset

logger = logging.getLogger(__name__)


@step
def data_profiler(dataset: Dataset) -> Annotated[DataProfile, "data_profile"]:
    """The profile of `dataset.train`, from which `auto` config values are chosen.

    Returns:
        The profile (shown in the dashboard as tables with the defaults the rules choose).
    """
    profile = profile_dataset(dataset)
    logger.info("data profile: %s", profile.summary())
    log_metadata(metadata={"data_profile": profile.to_dict()})
    return profile
