"""Hyperparameter tuning with Optuna on the validation split only, framework-free.

The flow, one module per part:

- `config`: `TuningConfig.from_dict`, the `tuning:` section of a config (search space, budget,
  objective, storage, sampler, pruner, heartbeat), without TensorFlow or Optuna, so the command
  checks it before any data is read.
- `study`: where the study lives (`resolve_storage_url` / `open_storage`: the env var
  `WALSREC_TUNING_STORAGE`, else `tuning.storage`, any SQLAlchemy URL or `journal:///path`, else
  a SQLite file in the project's state directory; passwords never logged, `redact_url`) and
  `prepare_study`: create or load the study and top up its queue to exactly `n_trials` trials,
  so that several workers on one storage produce one study with no duplicated or lost trial.
- `objective`: `validation_folds` + `ValidationObjective`: the objective sees the train and
  validation matrices and nothing else, so the test split cannot reach it; it reports the
  validation metric after every epoch, so the pruner stops hopeless trials early.
- `workers`: `run_worker` pops and runs trials until the queue is empty (or the time budget is
  spent), with a heartbeat: a trial whose worker died is marked FAIL once its heartbeat is older
  than the grace period, and a copy of it goes back into the queue.
- `results`: `best_trial_params`, summaries and plots, `train_best_model` (retrain with the best
  parameters on train + validation, for the test evaluation), `predict_every_pair`.

The package imports none of them: each name below is imported from its module on first use
(`walsrec.tuning.objective` imports TensorFlow; `config` and `study` do not).
"""

from walsrec.lazy import lazy_attributes

_MODULES = {
    "walsrec.tuning.config": (
        "BAYES_KEYS",
        "BLEND_KEYS",
        "WALS_KEYS",
        "ParameterSpec",
        "SearchSpace",
        "TuningConfig",
        "base_values",
        "metric_k",
        "split_params",
    ),
    "walsrec.tuning.study": (
        "JOURNAL_PREFIX",
        "STATE_DIR_ENV",
        "STORAGE_ENV",
        "_sampler_and_pruner",
        "default_state_dir",
        "derive_study_name",
        "one_run_per_sqlite_storage",
        "open_storage",
        "prepare_study",
        "redact_url",
        "resolve_storage_url",
    ),
    "walsrec.tuning.objective": ("ValidationFold", "ValidationObjective", "validation_folds"),
    "walsrec.tuning.workers": ("run_worker",),
    "walsrec.tuning.results": (
        "best_trial_params",
        "budget_summary",
        "predict_every_pair",
        "study_plots_html",
        "study_summary",
        "train_best_model",
        "trials_frame",
    ),
}

__all__ = sorted(name for names in _MODULES.values() for name in names if not name.startswith("_"))

_MODULES_OF = {name: module for module, names in _MODULES.items() for name in names}

__getattr__ = lazy_attributes(__name__, _MODULES_OF)


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__, "_sampler_and_pruner"})
