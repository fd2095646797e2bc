"""Deployment: a registered model version -> the BentoML model store -> a Bento -> its archive
in the artifact store, in one step (one pod on Kubeflow, whose BentoML store dies with it)."""

from __future__ import annotations

from zenml import pipeline

from steps import bento_builder
from walsrec.config import BentoConfig


@pipeline
def deployment_pipeline(model_name: str, version: str, bento: dict) -> None:
    """Package a model version (production by default) for serving.

    Args:
        model_name: the Model Control Plane model.
        version: "production", "staging", "latest" or a version number.
        bento: `bento_model_name` (the BentoML model name), `build` (also build a Bento and
            keep its archive in the artifact store; false only puts the model in the store,
            enough for `python run.py serve` on this machine) and `item_metadata` (a
            catalogue table the service can filter on).
    """
    config = BentoConfig.from_dict(bento)
    bento_builder(
        model_name=model_name,
        version=version,
        bento_model_name=config.bento_model_name,
        item_metadata=config.item_metadata,
        build=config.build,
    )
