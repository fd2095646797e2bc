"""Create (or resume) the Optuna study and queue exactly the configured number of trials."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import log_metadata, step

from walsrec.profile import DataProfile
from walsrec.tuning import (
    TuningConfig,
    base_values,
    derive_study_name,
    open_storage,
    prepare_study,
    redact_url,
    resolve_storage_url,
)

logger = logging.getLogger(__name__)


@step(enable_cache=False)  # the study lives in external storage: always look at it
def tuning_study(
    profile: DataProfile,
    data: dict,
    split: dict,
    wals: dict,
    blend: dict,
    tuning: TuningConfig,
    bayes: dict | None = None,
) -> Annotated[dict, "study"]:
    """Create the study or load it (a rerun resumes it) and top up its trial queue.

    Args:
        profile: the training data's profile: `auto` base values and relative ranges of the
            search space are fitted to it (and so is the study name).
        data: the `data:` section (its source goes into the derived study name).
        split: the `split:` section.
        wals: the base WALS values.
        blend: the base blend values.
        tuning: the `tuning:` section.
        bayes: the base posterior-averaging values (None: the section is absent).

    Returns:
        {"study_name", "storage" (password redacted), "objective", "existing", "enqueued"}.
    """
    config, wals, chosen = TuningConfig.from_dict(tuning).fitted(wals, profile, blend, bayes)
    for key, choice in chosen.items():
        logger.info("wals.%s = %s (auto: %s)", key, choice["value"], choice["reason"])
    logger.info(
        "search space for %s data (validation every %d epochs from epoch %d): %s",
        profile.kind,
        config.report_every,
        config.pruner_warmup_epochs,
        "; ".join(parameter.describe() for parameter in config.search_space.parameters),
    )
    url = resolve_storage_url(config.storage)
    name = derive_study_name(config, wals, blend or {}, split, str(data.get("source")), bayes)
    storage = open_storage(
        url, heartbeat_interval=config.heartbeat_interval, grace_period=config.grace_period
    )
    baseline = config.search_space.baseline(base_values(wals, blend, bayes))
    logger.info("first trial of a new study: the base values %s", baseline)
    counts = prepare_study(storage, name, config, baseline)
    logger.info(
        "study %s on %s: %d trials kept, %d queued",
        name,
        redact_url(url),
        counts["existing"],
        counts["enqueued"],
    )
    study = {
        "study_name": name,
        "storage": redact_url(url),
        "objective": config.objective,
        "n_trials": config.n_trials,
        "auto_values": chosen,
        **counts,
    }
    log_metadata(metadata={"tuning_study": study}, infer_model=True)
    return study
