"""A study's results: the best trial, summaries and plots, and the retrained model.

`best_trial_params`, then `train_best_model` retrains with the best parameters (as configs:
`walsrec.tuning.config.split_params`) on train + validation, for the test evaluation;
`predict_every_pair` is the rating prediction of every test pair.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from walsrec.data import Dataset
from walsrec.errors import WalsrecError
from walsrec.models.bayes import BayesConfig
from walsrec.models.ensemble import BlendConfig, blend_model
from walsrec.models.recommender import RecommenderModel
from walsrec.models.wals_config import WALSConfig
from walsrec.training import train_model
from walsrec.tuning.config import TuningConfig
from walsrec.tuning.study import _load_study


def best_trial_params(storage: Any, study_name: str, config: TuningConfig) -> dict[str, Any]:
    """The best complete trial: number, value, params, plus the trial counts by state.

    Raises:
        WalsrecError: no trial completed (all pruned or failed, or the budget was too small).
    """
    study = _load_study(storage, study_name, config)
    summary = study_summary(study)
    try:
        best = study.best_trial
    except ValueError:
        raise WalsrecError(
            f"study {study_name!r} has no completed trial ({summary['states']}); raise "
            "tuning.n_trials or tuning.timeout"
        ) from None
    return {
        **summary,
        "best_trial": best.number,
        "best_value": float(best.value),
        "best_params": dict(best.params),
        "fold_values": best.user_attrs.get("fold_values", []),
        "budget": budget_summary(summary["states"], config),
    }


def budget_summary(states: Mapping[str, int], config: TuningConfig) -> dict[str, Any]:
    """How much of the study ran: {"trials_run", "n_trials", "cut_short", "message"}.

    A study is cut short when trials are still queued after the workers stopped: the time
    budget (`tuning.timeout`) ran out. The message says so in words, and how to go on.
    """
    queued = int(states.get("WAITING", 0)) + int(states.get("RUNNING", 0))
    finished = sum(int(count) for state, count in states.items() if state != "WAITING")
    finished -= int(states.get("RUNNING", 0))
    ran = finished - int(states.get("FAIL", 0))
    message = f"{ran} of {config.n_trials} trials ran"
    if queued:
        message += (
            f"; the time budget (tuning.timeout: {config.timeout} s per worker) stopped the study "
            f"with {queued} still queued: run the same command again to continue the study, or "
            "raise tuning.timeout"
        )
    return {
        "trials_run": ran,
        "n_trials": config.n_trials,
        "cut_short": bool(queued),
        "message": message,
    }


def study_summary(study: Any) -> dict[str, Any]:
    """Name, direction and trial counts by state."""
    states: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return {
        "study_name": study.study_name,
        "direction": study.direction.name.lower(),
        "n_trials": sum(states.values()),
        "states": states,
    }


def trials_frame(study: Any) -> pd.DataFrame:
    """One row per trial: number, state, value, duration, params."""
    frame = study.trials_dataframe(attrs=("number", "state", "value", "duration", "params"))
    if "duration" in frame:
        frame["duration"] = frame["duration"].dt.total_seconds().round(2)
    return frame


def study_plots_html(study: Any) -> dict[str, str]:
    """HTML pages: trials table, optimization history, parameter importances, parallel coords.

    Plots are Plotly figures from optuna.visualization with plotly.js embedded (about 4.6 MB a
    page), so they open offline, as in the ZenML dashboard on a laptop without internet; a plot
    that can't be drawn yet (e.g. importances with one trial) becomes a page saying why.
    """
    import html

    from optuna import visualization

    pages = {"trials_table": trials_frame(study).to_html(index=False, na_rep="")}
    plots = {
        "optimization_history": visualization.plot_optimization_history,
        "param_importances": visualization.plot_param_importances,
        "parallel_coordinate": visualization.plot_parallel_coordinate,
    }
    for name, plot in plots.items():
        try:
            pages[name] = plot(study).to_html(include_plotlyjs=True, full_html=True)
        except Exception as error:  # e.g. too few complete trials for importances
            pages[name] = f"<p>{html.escape(name)} not available: {html.escape(str(error))}</p>"
    return pages


def train_best_model(
    dataset: Dataset,
    wals_config: WALSConfig,
    blend: BlendConfig,
    bayes: BayesConfig | None = None,
    *,
    k: int = 10,
    progress: bool = False,
) -> tuple[RecommenderModel, Dataset]:
    """Retrain on train + validation with the chosen configs; the dataset to evaluate it on.

    Returns:
        The model (blended when the blend is enabled and the mode is implicit; the posterior
        average when `bayes` is enabled) and the dataset whose train part is train +
        validation (no validation part; the same test part).
    """
    train = dataset.train
    if dataset.validation is not None:
        train = (dataset.train + dataset.validation).tocsr()
        train.sort_indices()
    full = dataclasses.replace(
        dataset,
        train=train,
        validation=None,
        stats={**dataset.stats, "train_interactions": int(train.nnz), "merged_validation": True},
    )
    model = train_model(
        full, wals_config, bayes=bayes, k=k, validation_every_epoch=False, progress=progress
    )
    if wals_config.mode == "implicit":
        model = blend_model(model, blend)
    return model, full


def predict_every_pair(model: RecommenderModel, pairs: pd.DataFrame) -> pd.DataFrame:
    """`user_id,item_id,prediction` for every pair, in input order, unknown ids included.

    A pair whose user or item the model does not know gets the part of the prediction the model
    does know: global mean plus the known user's or item's bias (the global mean alone when
    neither is known, or without biases).
    """
    user_index = pd.Series(model.user_index(), dtype="int64")
    item_index = pd.Series(model.item_index(), dtype="int64")
    users = pairs["user_id"].astype(str).map(user_index)
    items = pairs["item_id"].astype(str).map(item_index)
    known = (users.notna() & items.notna()).to_numpy()
    prediction = np.full(len(pairs), float(model.global_mean), dtype=np.float64)
    user_values = users.fillna(-1).to_numpy(np.int64)
    item_values = items.fillna(-1).to_numpy(np.int64)
    if known.any():
        prediction[known] = model.predict(user_values[known], item_values[known])
    if model.user_bias is not None:
        only_user = ~known & (user_values >= 0)
        prediction[only_user] += model.user_bias[user_values[only_user]]
    if model.item_bias is not None:
        only_item = ~known & (item_values >= 0)
        prediction[only_item] += model.item_bias[item_values[only_item]]
    return pd.DataFrame(
        {
            "user_id": pairs["user_id"].astype(str).to_numpy(),
            "item_id": pairs["item_id"].astype(str).to_numpy(),
            "prediction": prediction.astype(np.float32),
        }
    )
