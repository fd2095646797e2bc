"""One tuning worker: run queued trials of the shared study on the validation split."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import step

from walsrec.data import Dataset
from walsrec.profile import DataProfile
from walsrec.tuning import (
    TuningConfig,
    ValidationObjective,
    open_storage,
    resolve_storage_url,
    run_worker,
    validation_folds,
)

logger = logging.getLogger(__name__)


def objective_for(
    dataset: Dataset, config: TuningConfig, wals: dict, blend: dict, bayes: dict | None = None
):
    """The objective of a dataset: built from its train and validation parts only."""
    folds = validation_folds(
        dataset.train,
        dataset.validation,
        config.validation_folds,
        seed=config.sampler_seed,
        max_scores=config.max_validation_scores,
    )
    return ValidationObjective(
        folds,
        config.search_space,
        config.objective,
        wals,
        blend,
        bayes,
        report_every=config.report_every,
        report_from=config.first_report_epoch,
    )


@step(enable_cache=False)
def tuning_worker(
    dataset: Dataset,
    profile: DataProfile,
    study: dict,
    wals: dict,
    blend: dict,
    tuning: TuningConfig,
    worker_index: int,
    bayes: dict | None = None,
) -> Annotated[dict, "worker_summary"]:
    """Pop and run trials until the study's queue is empty or the time budget is spent.

    Several workers (one pod each on Kubeflow) share the study through its storage; on the
    local orchestrator they run one after the other and the first one does all the work.

    Returns:
        The worker's counts: trials run, complete, pruned, failed, best value, timed out.
    """
    config, wals, _ = TuningConfig.from_dict(tuning).fitted(wals, profile, blend, bayes)
    storage = open_storage(
        resolve_storage_url(config.storage),
        heartbeat_interval=config.heartbeat_interval,
        grace_period=config.grace_period,
    )
    objective = objective_for(dataset, config, wals, blend or {}, bayes)
    summary = run_worker(
        storage, study["study_name"], objective, config, worker=f"worker {worker_index}"
    )
    logger.info("tuning worker %d: %s", worker_index, summary)
    return summary
