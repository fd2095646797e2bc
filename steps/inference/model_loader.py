"""Find a registered model version and its recommender in the Model Control Plane.

Batch inference takes the `recommender` artifact as a lazy input (`registered_recommender`):
the step reads the artifact the version already holds, nothing is copied per run.
"""

from __future__ import annotations

import logging
from typing import Any

from zenml import Model
from zenml.client import Client
from zenml.enums import ModelStages

from walsrec.errors import ConfigError

logger = logging.getLogger(__name__)

STAGES = {stage.value: stage for stage in ModelStages}


def resolve_model_version(model_name: str, version: str):
    """The model version for a stage name (production, staging, latest) or a version number;
    only versions holding their model count (registry/versions.py)."""
    from registry.versions import resolve_model_version as resolve

    return resolve(model_name, version)


def _runs_now() -> bool:
    """Whether the pipeline being composed runs now, in this process (the local orchestrator),
    rather than later from a compiled spec (Kubeflow, a schedule)."""
    return Client().active_stack.orchestrator.flavor == "local"


def registered_recommender(model_name: str, version: str) -> tuple[Model, Any]:
    """The model version `version` names and its `recommender` artifact as a lazy input, for
    use while a pipeline is composed.

    The lazy artifact is resolved from the Model Control Plane when the step starts and
    recorded as the step's input: nothing is copied. A run that starts now (the local
    orchestrator) is pinned to the version's number, checked here: a promotion during the run
    doesn't change the model it uses, and a missing version or one without a `recommender`
    (its training run died) is one clear error before anything runs. A compiled run (Kubeflow,
    a schedule) keeps a stage name, resolved when it runs: a nightly batch job uses that
    night's production version.

    Raises:
        ConfigError: (a run that starts now) the model has no such version, or the version
            has no `recommender`.
    """
    runs_now = _runs_now()
    try:
        model_version = resolve_model_version(model_name, version)
    except ConfigError:
        if runs_now:
            raise
        logger.warning(
            "model %r has no version %r yet: the compiled run needs one when it starts",
            model_name,
            version,
        )
        model_version = None
    if model_version is not None and model_version.get_model_artifact("recommender") is None:
        raise ConfigError(
            f"model {model_name!r} version {model_version.number} ({version}) has no "
            "recommender artifact: its training run did not finish; name another version "
            "with --model-version"
        )
    stage = STAGES.get(str(version).strip().lower())
    if runs_now or stage is None:
        pinned: Any = model_version.number if model_version is not None else str(version)
    else:
        pinned = stage
    model = Model(name=model_name, version=pinned)
    return model, model.get_model_artifact("recommender")
