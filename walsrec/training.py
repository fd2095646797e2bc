"""From a split dataset to a trained, evaluated `RecommenderModel`.

These functions are the whole training workflow without any framework: the ZenML steps call
them, and so do the tuning objective and the benchmarks.
"""

from __future__ import annotations

import logging
import time
from datetime import datetime, timezone
from typing import TYPE_CHECKING

import numpy as np

from walsrec.data import Dataset
from walsrec.evaluation.metrics import evaluate, rating_metrics, sample_users
from walsrec.models.bayes import BayesConfig, PairAverage, PosteriorSample, train_bayes
from walsrec.models.popularity import PopularityModel
from walsrec.models.recommender import RecommenderModel
from walsrec.models.wals_config import WALSConfig

if TYPE_CHECKING:
    from walsrec.models.wals import WALSModel

logger = logging.getLogger(__name__)


def train_model(
    dataset: Dataset,
    config: WALSConfig,
    *,
    bayes: BayesConfig | None = None,
    k: int = 10,
    validation_every_epoch: bool = True,
    progress: bool = True,
) -> RecommenderModel:
    """Train WALS on `dataset.train` and bundle it with the vocabularies.

    Args:
        dataset: the split dataset; test data is never read here.
        config: the WALS hyperparameters.
        bayes: posterior averaging (`walsrec.models.bayes`); None or 0 samples trains plain WALS.
        k: cut-off for the per-epoch validation metrics of the learning curve.
        validation_every_epoch: when the dataset has a validation split, evaluate on it after
            each epoch (the learning curve); cheap on MovieLens-100K, skip it at large scale.
            With posterior averaging: the validation RMSE and MAE of the average so far, after
            each averaged sample.
        progress: show a progress bar over epochs (sweeps).

    Returns:
        The trained model, with `metadata["history"]` holding the loss (and validation metrics)
        per epoch, or per Gibbs sweep with `metadata["bayes"]` describing the sampling.
    """
    # TensorFlow is imported here, when training starts, not with this module: evaluation and a
    # run whose training is served from ZenML's cache never import it.
    from walsrec.models.wals import train_wals

    validation_curve: dict[int, dict[str, float]] = {}
    validating = (
        validation_every_epoch and dataset.validation is not None and dataset.validation.nnz > 0
    )
    started = time.perf_counter()
    if bayes is not None and bayes.enabled:
        sample_callback = None
        if validating:
            held = dataset.validation.tocoo()
            average = PairAverage(held.row, held.col)

            def sample_callback(number: int, sample: PosteriorSample) -> None:
                # History rows are sweeps: the averaged sample `number` is sweep burn_in + number.
                validation_curve[bayes.burn_in + number] = rating_metrics(
                    average.add(sample), held.data
                )

        wals = train_bayes(
            dataset.train, config, bayes, progress=progress, callback=sample_callback, log=logger
        )
    else:
        callback = None
        if validating:

            def callback(epoch: int, model: WALSModel) -> None:
                validation_curve[epoch] = evaluate(
                    model.score_users, dataset.train, dataset.validation, k=k
                )

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
    metadata = {
        "trained_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "training_seconds": round(seconds, 3),
        "history": history,
        "dataset": dict(dataset.stats),
    }
    if bayes is not None and bayes.enabled:
        # The saved config describes the saved factors (n_factors = the compressed rank, what
        # fold-in needs); the sampled model's own n_factors is kept here.
        metadata["bayes"] = {
            **bayes.to_dict(),
            "sampled_factors": config.n_factors,
            "averaged_samples": len(history) - bayes.burn_in,
        }
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
        config=wals.config.to_dict(),
        metadata=metadata,
    )


def evaluate_model(
    model: RecommenderModel,
    dataset: Dataset,
    *,
    k: int = 10,
    part: str = "test",
    max_users: int | None = None,
) -> dict[str, dict[str, float]]:
    """Metrics of the model and of the popularity baseline on the same held-out part.

    Args:
        model: the trained model (its vocabularies are the dataset's).
        dataset: the split dataset.
        k: the ranking cut-off.
        part: "test" or "validation".
        max_users: evaluate at most this many of the part's users, a seeded sample
            (`walsrec.evaluation.metrics.sample_users`), the same for both; None: all of them.

    Returns:
        {"wals": {...}, "popularity": {...}}: ranking metrics for both, and RMSE/MAE for the
        model when the data has ratings.
    """
    held_out = getattr(dataset, part)
    if held_out is None or held_out.nnz == 0:
        return {}
    held_out = sample_users(held_out, max_users)
    # RMSE/MAE only mean something when the model predicts ratings (explicit mode).
    explicit = model.config.get("mode") == "explicit"
    predict_fn = model.predict if dataset.has_ratings and explicit else None
    ours = evaluate(model.score_users, dataset.train, held_out, k=k, predict_fn=predict_fn)
    popularity = PopularityModel.fit(dataset.train)
    baseline = evaluate(
        popularity.score_users, dataset.train, held_out, k=k, recommend_fn=popularity.recommend
    )
    return {"wals": ours, "popularity": baseline}
