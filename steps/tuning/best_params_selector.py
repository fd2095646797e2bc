"""Select the best trial of the study and save the study's report pages as artifacts."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import log_metadata, step
from zenml.types import HTMLString

from walsrec.tuning import (
    TuningConfig,
    best_trial_params,
    open_storage,
    resolve_storage_url,
    study_plots_html,
)

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def best_params_selector(
    study: dict, tuning: TuningConfig
) -> tuple[
    Annotated[dict, "best_params"],
    Annotated[HTMLString, "trials_table"],
    Annotated[HTMLString, "optimization_history"],
    Annotated[HTMLString, "param_importances"],
    Annotated[HTMLString, "parallel_coordinate"],
]:
    """The best complete trial after every worker finished, logged on the model version.

    Returns:
        The best trial (study name, value, params, trial counts) and four HTML pages: the
        trials table, the optimization history, parameter importances, parallel coordinates.
    """
    import optuna

    config = TuningConfig.from_dict(tuning)
    storage = open_storage(
        resolve_storage_url(config.storage),
        heartbeat_interval=config.heartbeat_interval,
        grace_period=config.grace_period,
    )
    best = best_trial_params(storage, study["study_name"], config)
    best["objective"] = config.objective
    best["storage"] = study["storage"]
    logger.info(
        "best trial %d of study %s: %s = %.5f with %s",
        best["best_trial"],
        best["study_name"],
        config.objective,
        best["best_value"],
        best["best_params"],
    )
    budget = best["budget"]
    if budget["cut_short"]:
        logger.warning("tuning: %s", budget["message"])
    else:
        logger.info("tuning: %s", budget["message"])
    log_metadata(
        metadata={
            "tuning": {
                "study_name": best["study_name"],
                "best_params": best["best_params"],
                "best_value": best["best_value"],
                "objective": config.objective,
                "n_trials": best["n_trials"],
                "states": best["states"],
                "budget": budget,
                "storage": study["storage"],
            }
        },
        infer_model=True,
    )
    pages = study_plots_html(optuna.load_study(study_name=study["study_name"], storage=storage))
    return (
        best,
        HTMLString(pages["trials_table"]),
        HTMLString(pages["optimization_history"]),
        HTMLString(pages["param_importances"]),
        HTMLString(pages["parallel_coordinate"]),
    )
