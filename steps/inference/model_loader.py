"""Fetch a registered model version's recommender from the Model Control Plane."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import step

from walsrec.model import RecommenderModel

logger = logging.getLogger(__name__)


def resolve_model_version(model_name: str, version: str):
    """The model version for a stage name (production, staging, latest) or a version number;
    only versions holding their model count (registry/versions.py)."""
    from registry.versions import resolve_model_version as resolve

    return resolve(model_name, version)


@step(enable_cache=False)
def model_loader(
    model_name: str, version: str = "production"
) -> Annotated[RecommenderModel, "recommender"]:
    """Load the `recommender` artifact of `model_name` at `version`."""
    model_version = resolve_model_version(model_name, version)
    logger.info(
        "using model %s version %s (%s)", model_name, model_version.name, model_version.number
    )
    return model_version.get_model_artifact("recommender").load()
