"""Retrain with the best parameters on train + validation."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from walsrec.data import Dataset
from walsrec.models.recommender import RecommenderModel
from walsrec.profile import DataProfile, resolve_auto
from walsrec.tuning import split_params, train_best_model

logger = logging.getLogger(__name__)


@step
def tuned_model_trainer(
    dataset: Dataset,
    profile: DataProfile,
    best_params: dict,
    wals: dict,
    blend: dict,
    evaluation: dict,
    bayes: dict | None = None,
) -> tuple[
    Annotated[
        RecommenderModel, ArtifactConfig(name="recommender", artifact_type=ArtifactType.MODEL)
    ],
    Annotated[Dataset, "evaluation_dataset"],
]:
    """Train the final model on train + validation with the study's best parameters.

    Returns:
        The model (blended with the item-item part when the best trial used it, the posterior
        average with `bayes.posterior_samples` > 0) and the dataset to evaluate it on: train +
        validation as its train part, the untouched test part.
    """
    wals, chosen = resolve_auto(wals, profile)
    wals_config, blend_config, bayes_config = split_params(
        best_params["best_params"], wals, blend or {}, bayes
    )
    model, full = train_best_model(
        dataset,
        wals_config,
        blend_config,
        bayes_config,
        k=int(evaluation.get("k", 10)),
        progress=bool(evaluation.get("progress", False)),
    )
    model.metadata["tuning"] = {
        "study_name": best_params["study_name"],
        "best_params": best_params["best_params"],
        "best_value": best_params["best_value"],
        "states": best_params["states"],
        "budget": best_params.get("budget"),
    }
    model.metadata["data_profile"] = profile.to_dict()
    model.metadata["auto_values"] = chosen
    log_metadata(
        metadata={
            "training_seconds": model.metadata["training_seconds"],
            "wals_config": wals_config.to_dict(),
            "blend": blend_config.to_dict(),
            "bayes": bayes_config.to_dict(),
            "auto_values": chosen,
        },
        infer_model=True,
    )
    return model, full
