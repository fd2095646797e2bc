"""From a split dataset to a trained, evaluated `RecommenderModel`.

These functions are the whole training workflow without any framework: the ZenML steps call
them, and so do the tuning objective and the benchmarks.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

import numpy as np

from walsrec.baselines import PopularityModel
from walsrec.data import Dataset
from walsrec.metrics import evaluate
from walsrec.model import RecommenderModel
from walsrec.wals import WALSConfig, WALSModel, train_wals

logger = logging.getLogger(__name__)


def train_model(
    dataset: Dataset,
    config: WALSConfig,
    *,
    k: int = 10,
    validation_every_epoch: bool = True,
    progress: bool = True,
) -> RecommenderModel:
    """Train WALS on `dataset.train` and bundle it with the vocabularies.

    Args:
        dataset: the split dataset; test data is never read here.
        config: the WALS hyperparameters.
        k: cut-off for the per-epoch validation metrics of the learning curve.
        validation_every_epoch: when the dataset has a validation split, evaluate on it after
            each epoch (the learning curve); cheap on MovieLens-100K, skip it at large scale.
        progress: show a progress bar over epochs.

    Returns:
        The trained model, with `metadata["history"]` holding the loss (and validation metrics)
        per epoch.
    """
    validation_curve: dict[int, dict[str, float]] = {}
    callback = None
    if validation_every_epoch and dataset.validation is not None and dataset.validation.nnz:

        def callback(epoch: int, model: WALSModel) -> None:
            validation_curve[epoch] = evaluate(
                model.score_users, dataset.train, dataset.validation, k=k
            )

    started = time.perf_counter()
    wals = train_wals(dataset.train, config, progress=progress, callback=callback, log=logger)
    seconds = time.perf_counter() - started
    history = []
    for stats in wals.history:
        row = {"epoch": stats.epoch, "loss": float(stats.loss), "seconds": float(stats.seconds)}
        if stats.epoch in validation_curve:
            row["validation"] = {
                name: float(value)
                for name, value in validation_curve[stats.epoch].items()
                if name != "n_users_evaluated"
            }
        history.append(row)
    train = dataset.train.tocsr()
    return RecommenderModel(
        user_factors=wals.user_factors,
        item_factors=wals.item_factors,
        user_bias=wals.user_bias,
        item_bias=wals.item_bias,
        global_mean=float(wals.global_mean),
        user_ids=np.asarray(dataset.user_ids, dtype=object),
        item_ids=np.asarray(dataset.item_ids, dtype=object),
        seen=train,
        item_popularity=PopularityModel.fit(train).item_counts,
        item_titles=dict(dataset.item_titles),
        config=config.to_dict(),
        metadata={
            "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "training_seconds": round(seconds, 3),
            "history": history,
            "dataset": dict(dataset.stats),
        },
    )


def evaluate_model(
    model: RecommenderModel, dataset: Dataset, *, k: int = 10, part: str = "test"
) -> dict[str, dict[str, float]]:
    """Metrics of the model and of the popularity baseline on the same held-out part.

    Args:
        model: the trained model (its vocabularies are the dataset's).
        dataset: the split dataset.
        k: the ranking cut-off.
        part: "test" or "validation".

    Returns:
        {"wals": {...}, "popularity": {...}}: ranking metrics for both, and RMSE/MAE for the
        model when the data has ratings.
    """
    held_out = getattr(dataset, part)
    if held_out is None or held_out.nnz == 0:
        return {}
    # RMSE/MAE only mean something when the model predicts ratings (explicit mode).
    explicit = model.config.get("mode") == "explicit"
    predict_fn = model.predict if dataset.has_ratings and explicit else None
    ours = evaluate(model.score_users, dataset.train, held_out, k=k, predict_fn=predict_fn)
    popularity = PopularityModel.fit(dataset.train)
    baseline = evaluate(popularity.score_users, dataset.train, held_out, k=k)
    return {"wals": ours, "popularity": baseline}
