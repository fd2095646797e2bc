"""Copy a registered model version into the BentoML model store."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import get_step_context, log_metadata, step

from serving.packaging import BENTO_MODEL_NAME, save_to_model_store
from steps.inference.model_loader import resolve_model_version

logger = logging.getLogger(__name__)


@step(enable_cache=False)  # "production" moves; the store must get the version it points to now
def model_packager(
    model_name: str | None = None,
    version: str | None = "production",
    bento_model_name: str = BENTO_MODEL_NAME,
    promoted: bool | None = None,
    item_metadata: str | None = None,
) -> Annotated[str | None, "bento_model_tag"]:
    """Save `model_name` at `version` as a BentoML model (plain files, labelled with the ZenML
    model, version and key metrics).

    Args:
        model_name: the Model Control Plane model (None: this run's model).
        version: "production", "staging", "latest" or a version number (None: this run's
            model version, as continuous training packages the version it just promoted).
        bento_model_name: the BentoML model name the service serves.
        promoted: the promotion step's answer in a continuous-training run: False packages
            nothing (None: package unconditionally).
        item_metadata: a catalogue table packaged with the model for `where` filters.

    Returns:
        The BentoML model tag, "name:version"; None when not promoted.
    """
    if promoted is False:
        logger.info("not promoted: nothing to package")
        return None
    if version is None or model_name is None:
        model = get_step_context().model
        model_name = model_name or model.name
        version = str(model.number) if version is None else version
    model_version = resolve_model_version(model_name, version)
    recommender = model_version.get_model_artifact("recommender").load()
    metrics = model_version.run_metadata.get("metrics") or {}
    tag = save_to_model_store(
        recommender,
        model_name=model_name,
        model_version=str(model_version.number),
        metrics=metrics,
        bento_model_name=bento_model_name,
        item_metadata=item_metadata,
    )
    logger.info("model %s version %s is BentoML model %s", model_name, model_version.number, tag)
    log_metadata(metadata={"bento_model_tag": tag}, infer_artifact=True)
    return tag
