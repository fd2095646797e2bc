"""Train the WALS recommender."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from walsrec.config import EvaluationConfig
from walsrec.data import Dataset
from walsrec.models.bayes import BayesConfig
from walsrec.models.recommender import RecommenderModel
from walsrec.models.wals_config import WALSConfig, WALSParameters
from walsrec.profile import DataProfile, resolve_auto
from walsrec.training import train_model

logger = logging.getLogger(__name__)


@step
def model_trainer(
    dataset: Dataset,
    wals: WALSParameters,
    evaluation: EvaluationConfig,
    bayes: BayesConfig | None = None,
    profile: DataProfile | None = None,
) -> Annotated[
    RecommenderModel, ArtifactConfig(name="recommender", artifact_type=ArtifactType.MODEL)
]:
    """Fit WALS on the training part; the learning curve is the artifact's visualization.

    Args:
        dataset: the split dataset.
        wals: the `wals:` section of the config (every WALSConfig field, or `auto`).
        evaluation: the `evaluation:` section (k, and whether to track validation per epoch).
        bayes: the `bayes:` section (posterior averaging; None or 0 samples: plain WALS).
        profile: the data profile; a `wals:` value set to `auto` is chosen from it by the
            rules of `walsrec.profile` (logged, and stored in the model's metadata).

    Returns:
        The trained model as plain files (factors .npy, vocabularies JSON).
    """
    wals, chosen = resolve_auto(WALSParameters.from_dict(wals).to_dict(), profile)
    for key, choice in chosen.items():
        logger.info("wals.%s = %s (auto: %s)", key, choice["value"], choice["reason"])
    config = WALSConfig.from_dict(wals)
    evaluation_config = EvaluationConfig.from_dict(evaluation)
    bayes_config = BayesConfig.from_dict(bayes)
    bayes_config.check_model(config)
    model = train_model(
        dataset,
        config,
        bayes=bayes_config,
        k=int(evaluation_config.k),
        validation_every_epoch=bool(evaluation_config.validation_every_epoch),
        progress=bool(evaluation_config.progress),
    )
    if profile is not None:
        model.metadata["data_profile"] = profile.to_dict()
        model.metadata["auto_values"] = chosen
    history = model.metadata["history"]
    metadata = {
        "training_seconds": model.metadata["training_seconds"],
        "final_loss": history[-1]["loss"] if history else None,
        "wals_config": config.to_dict(),
        "bayes": bayes_config.to_dict(),
        "auto_values": chosen,
    }
    log_metadata(metadata=metadata, infer_model=True)
    log_metadata(metadata=metadata)  # on the step too: the open-source dashboard shows it
    return model
