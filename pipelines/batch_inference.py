"""Batch inference: top-k for every user (or a list) and scores for (user, item) pairs."""

from __future__ import annotations

from zenml import pipeline

from steps import pair_scorer, recommendation_writer
from steps.inference.model_loader import registered_recommender


@pipeline
def batch_inference_pipeline(model_name: str, version: str, data: dict, output: dict) -> None:
    """Recommend with a registered model version (production by default).

    The version's `recommender` artifact is a lazy input from the Model Control Plane (no copy
    of the model per run), and the steps run with that model version, so the run and its
    outputs are linked to the version used.

    Args:
        model_name: the Model Control Plane model.
        version: "production", "staging", "latest" or a version number.
        data: how to read the pairs file (same keys as training's `data:`).
        output: `k`, `users_path`, `topk_path`, `pairs_path`, `predictions_path`.
    """
    model, recommender = registered_recommender(model_name, version)
    recommendation_writer.with_options(model=model)(recommender, output=output)
    if output.get("pairs_path"):
        pair_scorer.with_options(model=model)(
            recommender,
            pairs_path=output["pairs_path"],
            data=data,
            output_path=output.get("predictions_path"),
        )
