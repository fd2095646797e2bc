"""Pieces of pipeline definitions shared by training, tuning and continuous training."""

from __future__ import annotations

from typing import Any

from steps import data_loader, data_splitter


def load_and_split(data: dict, split: dict, preprocess: dict) -> Any:
    """load -> validate -> split.

    Returns:
        The `dataset` artifact and the test file's `interactions` (None without a test file).
    """
    interactions = data_loader(source=data["source"], data=data, id="data_loader")
    test_interactions = None
    if data.get("test_path"):
        test_interactions = data_loader(source=data["test_path"], data=data, id="test_data_loader")
    dataset = data_splitter(
        interactions, split=split, preprocess=preprocess, test_interactions=test_interactions
    )
    return dataset, test_interactions


def tune_and_retrain(
    dataset: Any,
    profile: Any,
    data: dict,
    split: dict,
    wals: dict,
    blend: dict,
    tuning: dict,
    evaluation: dict,
    bayes: dict | None,
) -> Any:
    """study -> `tuning.n_workers` workers -> best parameters -> retrain on train + validation.

    Returns:
        The tuned `recommender` and the dataset it is evaluated on.
    """
    from steps import best_params_selector, tuned_model_trainer, tuning_study, tuning_worker

    study = tuning_study(
        profile, data=data, split=split, wals=wals, blend=blend, tuning=tuning, bayes=bayes
    )
    workers = [
        tuning_worker(
            dataset,
            profile,
            study,
            wals=wals,
            blend=blend,
            tuning=tuning,
            worker_index=index,
            bayes=bayes,
            id=f"tuning_worker_{index}",
        )
        for index in range(int(tuning.get("n_workers", 1)))
    ]
    best = best_params_selector(study, tuning=tuning, after=workers)[0]
    return tuned_model_trainer(
        dataset, profile, best, wals=wals, blend=blend, evaluation=evaluation, bayes=bayes
    )
