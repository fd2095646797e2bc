"""Batch inference: top-k for every user (or a list) and scores for (user, item) pairs."""

from __future__ import annotations

from zenml import pipeline

from steps import model_loader, pair_scorer, recommendation_writer


@pipeline
def batch_inference_pipeline(model_name: str, version: str, data: dict, output: dict) -> None:
    """Recommend with a registered model version (production by default).

    Args:
        model_name: the Model Control Plane model.
        version: "production", "staging", "latest" or a version number.
        data: how to read the pairs file (same keys as training's `data:`).
        output: `k`, `users_path`, `topk_path`, `pairs_path`, `predictions_path`.
    """
    model = model_loader(model_name=model_name, version=version)
    recommendation_writer(model, output=output)
    if output.get("pairs_path"):
        pair_scorer(
            model,
            pairs_path=output["pairs_path"],
            data=data,
            output_path=output.get("predictions_path"),
        )
