"""Training: load -> validate -> split -> train -> evaluate -> register (and promote)."""

from __future__ import annotations

from zenml import pipeline

from pipelines.common import load_and_split
from steps import (
    data_profiler,
    model_evaluator,
    model_promoter,
    model_trainer,
    recommendation_writer,
)


@pipeline
def training_pipeline(
    data: dict,
    preprocess: dict,
    split: dict,
    wals: dict,
    evaluation: dict,
    promotion: dict,
    output: dict,
    bayes: dict | None = None,
) -> None:
    """Train and evaluate a WALS recommender; each run is a new version of the configured model.

    Args:
        data: where the interactions come from and how to read them (`source`, `test_path`,
            `format`, `columns`, `header`, `strict`, `rating_min`, `rating_max`).
        preprocess: minimum interactions per user and item.
        split: how the test (and validation) part is made.
        wals: the WALS hyperparameters; `auto` values are chosen from the data profile.
        evaluation: ranking cut-off `k` and learning-curve options.
        promotion: the metric that decides promotion to production.
        output: optional `topk_path` to write every user's top-k after training.
        bayes: posterior averaging of the WALS model (rating prediction; off when absent).
    """
    dataset, _ = load_and_split(data, split, preprocess)
    profile = data_profiler(dataset)
    model = model_trainer(dataset, wals=wals, evaluation=evaluation, bayes=bayes, profile=profile)
    evaluation_result = model_evaluator(model, dataset, evaluation=evaluation)[0]
    model_promoter(evaluation_result, promotion=promotion)
    if output.get("topk_path"):
        recommendation_writer(model, output=output)
