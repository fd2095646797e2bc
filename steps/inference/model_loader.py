"""Find a registered model version and its recommender in the Model Control Plane.

Batch inference takes the `recommender` artifact as a lazy input (`registered_recommender`):
the step reads the artifact the version already holds, nothing is copied per run.
"""

from __future__ import annotations

from typing import Any

from zenml import Model
from zenml.client import Client
from zenml.enums import ModelStages

from walsrec.errors import ConfigError

STAGES = {stage.value: stage for stage in ModelStages}


def resolve_model_version(model_name: str, version: str):
    """The model version for a stage name (production, staging, latest) or a version number.

    Looked up with a listing, which ZenML's client answers at once also while a pipeline is
    composed (`get_model_version` would return a deferred lookup there).
    """
    text = str(version).strip()
    stage = STAGES.get(text.lower())
    if stage == ModelStages.LATEST:
        filters: dict[str, Any] = {}
    elif stage is not None:
        filters = {"stage": stage.value}
    elif text.isdigit():
        filters = {"number": int(text)}
    else:
        filters = {"name": text}
    found = Client().list_model_versions(model=model_name, sort_by="desc:number", size=1, **filters)
    if not found.items:
        raise ConfigError(
            f"model {model_name!r} has no version {version!r}: train one first "
            "(python run.py train) or name an existing version with --model-version"
        )
    return found.items[0]


def registered_recommender(model_name: str, version: str) -> tuple[Model, Any]:
    """The model version `version` names, pinned to its number, and its `recommender` artifact
    as a lazy input, for use while a pipeline is composed.

    Pinning the number when the run is composed means a promotion during the run doesn't
    change the model it uses; the lazy artifact is resolved when the step starts, from the
    Model Control Plane, and recorded as the step's input.

    Raises:
        ConfigError: the model has no such version, or the version has no `recommender` (its
            training run failed or was killed before the model was stored).
    """
    model_version = resolve_model_version(model_name, version)
    if model_version.get_model_artifact("recommender") is None:
        raise ConfigError(
            f"model {model_name!r} version {model_version.number} ({version}) has no "
            "recommender artifact: its training run did not finish; name another version "
            "with --model-version"
        )
    model = Model(name=model_name, version=model_version.number)
    return model, model.get_model_artifact("recommender")
