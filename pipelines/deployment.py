"""Deployment: a registered model version -> the BentoML model store -> a Bento."""

from __future__ import annotations

from zenml import pipeline

from steps import bento_builder, model_packager
from walsrec.config import BentoConfig


@pipeline
def deployment_pipeline(model_name: str, version: str, bento: dict) -> None:
    """Package a model version (production by default) for serving.

    Args:
        model_name: the Model Control Plane model.
        version: "production", "staging", "latest" or a version number.
        bento: `bento_model_name` (the BentoML model name), `build` (also build a Bento;
            false only puts the model in the store, enough for `python run.py serve`) and
            `item_metadata` (a catalogue table the service can filter on).
    """
    config = BentoConfig.from_dict(bento)
    tag = model_packager(
        model_name=model_name,
        version=version,
        bento_model_name=config.bento_model_name,
        item_metadata=config.item_metadata,
    )
    if config.build:
        bento_builder(tag)
