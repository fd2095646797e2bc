"""Train the WALS recommender."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import ArtifactConfig, log_metadata, step
from zenml.enums import ArtifactType

from walsrec.bayes import BayesConfig
from walsrec.data import Dataset
from walsrec.model import RecommenderModel
from walsrec.training import train_model
from walsrec.wals import WALSConfig

logger = logging.getLogger(__name__)


@step
def model_trainer(
    dataset: Dataset, wals: dict, evaluation: dict, bayes: dict | None = None
) -> Annotated[
    RecommenderModel, ArtifactConfig(name="recommender", artifact_type=ArtifactType.MODEL)
]:
    """Fit WALS on the training part; the learning curve is the artifact's visualization.

    Args:
        dataset: the split dataset.
        wals: the `wals:` section of the config (every WALSConfig field).
        evaluation: the `evaluation:` section (k, and whether to track validation per epoch).
        bayes: the `bayes:` section (posterior averaging; None or 0 samples: plain WALS).

    Returns:
        The trained model as plain files (factors .npy, vocabularies JSON).
    """
    config = WALSConfig.from_dict(wals)
    bayes_config = BayesConfig.from_dict(bayes)
    bayes_config.check_model(config)
    model = train_model(
        dataset,
        config,
        bayes=bayes_config,
        k=int(evaluation.get("k", 10)),
        validation_every_epoch=bool(evaluation.get("validation_every_epoch", True)),
        progress=bool(evaluation.get("progress", True)),
    )
    history = model.metadata["history"]
    log_metadata(
        metadata={
            "training_seconds": model.metadata["training_seconds"],
            "final_loss": history[-1]["loss"] if history else None,
            "wals_config": config.to_dict(),
            "bayes": bayes_config.to_dict(),
        },
        infer_model=True,
    )
    return model
