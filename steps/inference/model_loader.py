"""Fetch a registered model version's recommender from the Model Control Plane."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import step
from zenml.client import Client
from zenml.enums import ModelStages

from walsrec.errors import ConfigError
from walsrec.model import RecommenderModel

logger = logging.getLogger(__name__)

STAGES = {stage.value: stage for stage in ModelStages}


def resolve_model_version(model_name: str, version: str):
    """The model version for a stage name (production, staging, latest) or a version number."""
    wanted = STAGES.get(str(version).lower(), str(version))
    try:
        return Client().get_model_version(model_name, wanted)
    except KeyError as exc:
        raise ConfigError(
            f"model {model_name!r} has no version {version!r}: train one first "
            "(python run.py train) or name an existing version with --model-version"
        ) from exc


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
