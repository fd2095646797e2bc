"""Pieces of pipeline definitions shared by training, tuning and continuous training."""

from __future__ import annotations

from typing import Any

from steps import data_loader, data_splitter
from walsrec import __version__
from walsrec.data import source_fingerprint


def _loader(source: str, data: dict, invocation_id: str) -> Any:
    """`data_loader` for `source`, cacheable when the source can be fingerprinted.

    The fingerprint (path, size and modification time of a file, or a MovieLens archive's
    checksum; see `source_fingerprint`) is a step parameter, so it is part of the step's cache
    key: an unchanged file is served from the cache, a changed one is read again. A source
    without a fingerprint is read on every run.
    """
    fingerprint = source_fingerprint(source)
    step = data_loader if fingerprint else data_loader.with_options(enable_cache=False)
    if fingerprint:
        fingerprint = f"{fingerprint} walsrec={__version__}"
    return step(source=source, data=data, source_fingerprint=fingerprint, id=invocation_id)


def load_and_split(data: dict, split: dict, preprocess: dict) -> Any:
    """load -> validate -> split.

    Returns:
        The `dataset` artifact and the test file's `interactions` (None without a test file).
    """
    interactions = _loader(data["source"], data, "data_loader")
    test_interactions = None
    if data.get("test_path"):
        test_interactions = _loader(data["test_path"], data, "test_data_loader")
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
