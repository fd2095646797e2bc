"""Hyperparameter tuning with Optuna on the validation split only, framework-free.

The flow, each part one function:

- `TuningConfig.from_dict`: the `tuning:` section of a config (search space, budget, objective,
  storage, sampler, pruner, heartbeat).
- `resolve_storage_url` / `open_storage`: where the study lives: the env var
  `WALSREC_TUNING_STORAGE`, else `tuning.storage` (any SQLAlchemy URL, or `journal:///path` for
  a file-based journal that several local processes can share), else a SQLite file in the
  project's state directory. Passwords are never logged (`redact_url`).
- `prepare_study`: create or load the study (its name derived from the config) and top up its
  queue to exactly `n_trials` trials. The queue is what makes several workers on one storage
  produce one study with no duplicated or lost trial: every trial is created here, once, as
  WAITING, and a worker only ever runs a trial it popped atomically from the storage.
- `validation_folds` + `ValidationObjective`: the objective sees the train and validation
  matrices and nothing else, so the test split cannot reach it. Each trial trains WALS and
  reports the validation metric after every epoch (with posterior averaging, `bayes:`, the
  validation error of the average so far after every `report_every` samples), so the pruner
  stops hopeless trials early.
- `run_worker`: pop and run trials until the queue is empty (or the time budget is spent),
  with a heartbeat: a trial whose worker died (SIGKILL, a lost pod) is marked FAIL once its
  heartbeat is older than the grace period, and a copy of it goes back into the queue.
- `best_trial_params`, `train_best_model`: retrain with the best parameters on
  train + validation, for the test evaluation.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import math
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from walsrec.data import Dataset
from walsrec.data.splits import random_holdout
from walsrec.errors import ConfigError, DataError, WalsrecError
from walsrec.evaluation.metrics import evaluate, rating_metrics
from walsrec.models.bayes import BayesConfig, PairAverage, gibbs_samples
from walsrec.models.ensemble import (
    METHOD_KEYS,
    BlendConfig,
    blend_model,
    blended_score_fn,
    item_item_matrix,
    neighbourhood_scores,
    resolve_method,
)
from walsrec.models.recommender import RecommenderModel
from walsrec.models.wals import WALSConfig, WALSModel, train_wals
from walsrec.progress import progress_bar
from walsrec.training import train_model
from walsrec.tuning_config import (
    BAYES_KEYS,
    BLEND_KEYS,
    WALS_KEYS,
    ParameterSpec,
    SearchSpace,
    TuningConfig,
    base_values,
    metric_k,
)

__all__ = [
    "STORAGE_ENV",
    "ParameterSpec",
    "SearchSpace",
    "TuningConfig",
    "ValidationFold",
    "ValidationObjective",
    "base_values",
    "best_trial_params",
    "budget_summary",
    "default_state_dir",
    "open_storage",
    "predict_every_pair",
    "prepare_study",
    "redact_url",
    "resolve_storage_url",
    "run_worker",
    "study_summary",
    "train_best_model",
    "validation_folds",
]

logger = logging.getLogger(__name__)
# WALS's per-epoch INFO lines would drown the trial lines: trials log at WARNING and above.
_TRIAL_LOG = logging.getLogger(f"{__name__}.trial")
_TRIAL_LOG.setLevel(logging.WARNING)

STORAGE_ENV = "WALSREC_TUNING_STORAGE"
STATE_DIR_ENV = "WALSREC_STATE_DIR"
JOURNAL_PREFIX = "journal://"


def derive_study_name(
    tuning: TuningConfig,
    wals: Mapping,
    blend: Mapping,
    split: Mapping,
    source: str,
    bayes: Mapping | None = None,
) -> str:
    """A stable name from everything that defines the study, so a rerun resumes it.

    The budget (n_trials, timeout, workers) is left out: raising n_trials continues the study.
    An empty or missing `bayes` section and the default `report_every` leave the name as it was
    before they existed, so existing studies still resume.
    """
    if tuning.study_name:
        return tuning.study_name
    defining = tuning.to_dict()
    for key in ("n_trials", "timeout", "n_workers", "storage", "progress", "study_name"):
        defining.pop(key, None)
    if defining.get("report_every") == 1:
        defining.pop("report_every")
    defines = {"tuning": defining, "wals": wals, "blend": blend, "split": split, "source": source}
    if bayes:
        defines["bayes"] = bayes
    payload = json.dumps(defines, sort_keys=True, default=str)
    digest = hashlib.sha256(payload.encode()).hexdigest()[:10]
    return f"walsrec-{tuning.objective.replace('@', '-at-')}-{digest}"


# --------------------------------------------------------------------------------------------
# Storage
# --------------------------------------------------------------------------------------------


def default_state_dir() -> Path:
    """$WALSREC_STATE_DIR, else `state/` at the project root (gitignored)."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parent.parent / "state"


def resolve_storage_url(configured: str | None = None, state_dir: Path | None = None) -> str:
    """The study storage: $WALSREC_TUNING_STORAGE, else `configured`, else SQLite in state/.

    The environment wins so that a password can stay out of YAML files (a Kubernetes secret
    sets the variable in every pod).
    """
    url = os.environ.get(STORAGE_ENV) or configured
    if url:
        return str(url)
    state_dir = Path(state_dir) if state_dir is not None else default_state_dir()
    state_dir.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{(state_dir / 'optuna.db').resolve()}"


@contextlib.contextmanager
def one_run_per_sqlite_storage(url: str) -> Iterator[None]:
    """Hold the lock of a SQLite study storage for a whole tuning run; other storages pass.

    SQLite serves one tuning run at a time: two runs at once raced on creating its tables
    ("table alembic_version already exists") or both topped the trial queue up (60 trials for
    `n_trials: 50`). The second run stops at once with a message naming the storages built for
    parallel runs.

    Raises:
        ConfigError: another process holds the lock (the message names it).
    """
    from walsrec.locks import LockHeld, describe_holder, file_lock

    if not url.startswith("sqlite:///"):
        yield
        return
    database = Path(url[len("sqlite:///") :])
    try:
        with file_lock(f"{database}.lock", timeout=0, purpose="a tuning run"):
            yield
    except LockHeld as held:
        raise ConfigError(
            f"the tuning storage {database} is in use by {describe_holder(held.holder)}: "
            "a SQLite study serves one tuning run at a time. Wait for it to finish (this "
            "command then resumes the study), or run tunings in parallel on a journal file "
            "(--storage journal:///path/study.log) or a database (--storage "
            "postgresql://user@host/db or mysql+pymysql://user@host/db)"
        ) from None


def redact_url(url: str) -> str:
    """The URL with any password replaced by ***, safe to log and to store as metadata."""
    if url.startswith(JOURNAL_PREFIX):
        return url
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL: show only its scheme
        return url.split("://", 1)[0] + "://***"


def open_storage(url: str, *, heartbeat_interval: int = 10, grace_period: int = 30) -> Any:
    """An Optuna storage for `url`, with heartbeats where the backend supports them.

    `journal:///path/file.log` is a JournalStorage on a file (safe for several processes on one
    machine, where SQLite would lock); anything else is an SQLAlchemy URL (RDBStorage with
    heartbeat: a trial whose process died is failed after `grace_period` seconds and retried).

    Raises:
        WalsrecError: the database can't be reached (the message names the redacted URL).
    """
    import optuna
    from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    if url.startswith(JOURNAL_PREFIX):
        path = Path(url[len(JOURNAL_PREFIX) :])
        path.parent.mkdir(parents=True, exist_ok=True)
        return JournalStorage(JournalFileBackend(str(path)))
    engine_kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        # Wait for a lock instead of failing at once when two processes write together.
        engine_kwargs["connect_args"] = {"timeout": 60}
    try:
        with warnings.catch_warnings():  # heartbeats are "experimental" since Optuna 2.8
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            retry = RetryHeartbeatStaleTrialCallback(max_retry=3)
            return RDBStorage(
                url,
                engine_kwargs=engine_kwargs,
                heartbeat_interval=heartbeat_interval,
                grace_period=grace_period,
                heartbeat_stale_trial_callback=retry,
            )
    except optuna.exceptions.OptunaError:
        raise
    except Exception as error:
        raise WalsrecError(
            f"cannot open the tuning storage {redact_url(url)}: {type(error).__name__}: "
            f"{str(error).splitlines()[0] if str(error) else ''}".replace(url, redact_url(url))
        ) from None


def _sampler_and_pruner(config: TuningConfig, worker: str = "") -> tuple[Any, Any]:
    """One per worker, kept across its trials: a sampler re-created per trial would replay the
    same seeded draws. Workers get different seeds, or parallel ones would sample alike."""
    import optuna

    seed = config.sampler_seed
    if worker:
        seed += int(hashlib.sha256(worker.encode()).hexdigest()[:6], 16)
    sampler = optuna.samplers.TPESampler(
        seed=seed,
        n_startup_trials=config.n_startup_trials,
        multivariate=config.multivariate,
    )
    if config.pruning:
        pruner = optuna.pruners.MedianPruner(
            n_startup_trials=config.pruner_startup_trials,
            n_warmup_steps=config.pruner_warmup_epochs,
        )
    else:
        pruner = optuna.pruners.NopPruner()
    return sampler, pruner


def _load_study(
    storage: Any, study_name: str, config: TuningConfig, components: tuple | None = None
) -> Any:
    import optuna

    sampler, pruner = components or _sampler_and_pruner(config)
    return optuna.load_study(study_name=study_name, storage=storage, sampler=sampler, pruner=pruner)


def prepare_study(
    storage: Any,
    study_name: str,
    config: TuningConfig,
    baseline: Mapping[str, Any] | None = None,
) -> dict[str, int]:
    """Create the study (or load it) and top up its queue to exactly `config.n_trials` trials.

    Trials that failed are not counted (a failed trial is retried), every other trial is:
    complete, pruned, running and waiting. Call it once before the workers start (the
    pipeline's study step); two concurrent calls could both top up. In a new study the first
    trial runs `baseline` (`SearchSpace.baseline`: the values the defaults would train with),
    marked by the user attribute "baseline"; the sampler chooses every other trial's values.

    Returns:
        {"existing": trials kept from earlier runs, "enqueued": new trials queued}.

    Raises:
        ConfigError: an existing study with this name optimizes in the other direction.
    """
    import optuna
    from optuna.trial import TrialState

    sampler, pruner = _sampler_and_pruner(config)
    study = optuna.create_study(
        study_name=study_name,
        storage=storage,
        sampler=sampler,
        pruner=pruner,
        direction=config.direction,
        load_if_exists=True,
    )
    if study.direction.name.lower() != config.direction:
        raise ConfigError(
            f"study {study_name!r} already exists and {study.direction.name.lower()}s; "
            f"objective {config.objective} needs {config.direction}: set tuning.study_name"
        )
    _fail_stale_trials(study)
    trials = study.get_trials(deepcopy=False)
    counted = [t for t in trials if t.state != TrialState.FAIL]
    missing = max(config.n_trials - len(counted), 0)
    fresh = not trials
    for number in range(missing):
        if number == 0 and fresh and baseline:
            study.enqueue_trial(dict(baseline), user_attrs={"baseline": True})
            continue
        # Empty fixed params: the sampler chooses every value when a worker pops the trial.
        study.enqueue_trial({}, skip_if_exists=False)
    study.set_user_attr("objective", config.objective)
    study.set_user_attr("n_trials", config.n_trials)
    return {"existing": len(counted), "enqueued": missing}


# --------------------------------------------------------------------------------------------
# The objective: validation data only
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ValidationFold:
    """A training matrix and the validation matrix scored against it; never test data."""

    train: sp.csr_matrix
    validation: sp.csr_matrix


def validation_folds(
    train: sp.spmatrix,
    validation: sp.spmatrix,
    n_folds: int = 1,
    seed: int = 42,
    max_scores: int | None = None,
) -> list[ValidationFold]:
    """The configured split, then `n_folds - 1` re-draws of a same-sized per-user holdout.

    Only the training part and the validation part of a dataset go in, so nothing derived from
    them can contain a test interaction.

    Raises:
        DataError: there is no validation data.
    """
    if validation is None or validation.nnz == 0:
        raise DataError(
            "tuning needs a validation split: set split.validation_ratio > 0 (e.g. 0.2)"
        )
    train, validation = sp.csr_matrix(train), sp.csr_matrix(validation)
    folds = [ValidationFold(train, validation)]
    if n_folds > 1:
        folds += _redrawn_folds(train, validation, n_folds, seed)
    if max_scores is None:
        return folds
    return [_sampled_fold(fold, max_scores, seed, index) for index, fold in enumerate(folds)]


def _sampled_fold(fold: ValidationFold, max_scores: int, seed: int, index: int) -> ValidationFold:
    """The fold with its validation rows cut to a seeded sample of users when scoring them all
    against every item would exceed `max_scores` scores."""
    users = np.flatnonzero(np.diff(fold.validation.indptr))
    n_items = fold.validation.shape[1]
    keep = max(1, max_scores // max(n_items, 1))
    if users.size * n_items <= max_scores or keep >= users.size:
        return fold
    chosen = np.sort(np.random.default_rng([seed, 2000 + index]).choice(users, keep, replace=False))
    mask = np.zeros(fold.validation.shape[0], dtype=bool)
    mask[chosen] = True
    sampled = sp.csr_matrix(sp.diags(mask.astype(fold.validation.dtype)) @ fold.validation)
    sampled.eliminate_zeros()
    sampled.sort_indices()
    if index == 0:
        logger.info(
            "validation: %d of %d users sampled (all of them x %d items is more than "
            "tuning.max_validation_scores = %d scores per report)",
            keep,
            users.size,
            n_items,
            max_scores,
        )
    return ValidationFold(fold.train, sampled)


def _redrawn_folds(
    train: sp.csr_matrix, validation: sp.csr_matrix, n_folds: int, seed: int
) -> list[ValidationFold]:
    """`n_folds - 1` re-draws of a validation holdout of the configured one's size."""
    folds = []
    combined = (train + validation).tocoo()
    ratio = validation.nnz / combined.nnz
    for fold in range(1, n_folds):
        held = random_holdout(combined.row, ratio, np.random.default_rng([seed, 1000 + fold]))
        parts = []
        for mask in (~held, held):
            part = sp.csr_matrix(
                (combined.data[mask], (combined.row[mask], combined.col[mask])),
                shape=combined.shape,
            )
            part.sort_indices()
            parts.append(part)
        folds.append(ValidationFold(*parts))
    return folds


class ValidationObjective:
    """Optuna objective: train WALS (and the blend) per fold, score on validation.

    It holds `ValidationFold`s only. The value after each epoch of the first fold (every
    `report_every` epochs) is reported to the trial, so the pruner can stop a trial early; with
    several folds, the objective is their mean. With posterior averaging (`bayes:`) the steps
    are the averaged samples and the value is the validation error of the average so far,
    which is what the final averaged model predicts.
    """

    def __init__(
        self,
        folds: list[ValidationFold],
        search_space: SearchSpace,
        objective: str = "ndcg@10",
        base_wals: Mapping[str, Any] | None = None,
        base_blend: Mapping[str, Any] | None = None,
        base_bayes: Mapping[str, Any] | None = None,
        report_every: int = 1,
        report_from: int = 1,
    ) -> None:
        if not folds or not all(isinstance(fold, ValidationFold) for fold in folds):
            raise DataError("the tuning objective needs at least one ValidationFold")
        self.folds = list(folds)
        self.search_space = search_space
        self.objective = objective
        self.k = metric_k(objective)
        self.base_wals = dict(base_wals or {})
        self.base_blend = dict(base_blend or {})
        self.base_bayes = dict(base_bayes or {})
        self.report_every = int(report_every)
        # Epochs before the pruner's warm-up can't stop a trial: scoring them (all users x
        # all items) would be wasted; the last epoch is always scored.
        self.report_from = max(int(report_from), 1)
        fixed_samples = search_space.fixed.get(
            "posterior_samples", self.base_bayes.get("posterior_samples")
        )
        tuned = any(p.name == "posterior_samples" for p in search_space.parameters)
        if self.k is not None and (tuned or fixed_samples):
            raise ConfigError(
                f"bayes.posterior_samples > 0 averages rating predictions: tune it on "
                f"tuning.objective rmse or mae, not {objective}"
            )
        self.item_item_method = self._adapt_to_catalogue()
        # The last item-item matrix of each fold and the blend values it was built with: it
        # depends on the fold and the blend's method keys only, not on WALS's parameters.
        self._item_item: dict[int, tuple[tuple, Any]] = {}

    def _adapt_to_catalogue(self) -> str | None:
        """Resolve the item-item method for the folds' catalogue; drop keys that can't apply.

        When the item-item part is left out (`blend.method: ease` on a catalogue above
        `blend.max_items`), every blend key leaves the search space and trials run WALS
        alone, with the reason logged once here; otherwise the keys of the other method go
        (EASE's l2 under kNN, kNN's neighbours and shrinkage under EASE).
        """
        tuned = {parameter.name for parameter in self.search_space.parameters}
        fixed_blend = {k: v for k, v in self.search_space.fixed.items() if k in BLEND_KEYS}
        base = BlendConfig.from_dict({**self.base_blend, **fixed_blend})
        if "method" in tuned:
            return base.method  # chosen per trial: nothing to drop up front
        method, reason = resolve_method(base, self.folds[0].train.shape[1])
        if method is None:
            dropped = set(BLEND_KEYS)
        else:
            others = (keys for other, keys in METHOD_KEYS.items() if other != method)
            dropped = {key for keys in others for key in keys}
        dropped &= tuned
        if method is None and (dropped or base.enabled):
            logger.warning("%s; trials tune WALS alone (dropped: %s)", reason, sorted(dropped))
        elif dropped:
            logger.info("blend.method %s: not tuning %s", method, ", ".join(sorted(dropped)))
        if dropped:
            kept = tuple(p for p in self.search_space.parameters if p.name not in dropped)
            self.search_space = SearchSpace(parameters=kept, fixed=self.search_space.fixed)
        return method

    def configs(self, params: Mapping[str, Any]) -> tuple[WALSConfig, BlendConfig, BayesConfig]:
        """The WALS, blend and bayes configs of one trial's parameters over the base values.

        Raises:
            ConfigError: an invalid value, or posterior averaging of a WALS config that is not
                a rating model.
        """
        wals, blend, bayes = split_params(params, self.base_wals, self.base_blend, self.base_bayes)
        if self.k is None or self.item_item_method is None:
            # Rating prediction (the item-item scores are not ratings), or no item-item model
            # for this catalogue (its reason was logged once, when the objective was built).
            blend = blend.model_copy(update={"item_item_weight": 0.0})
        return wals, blend, bayes

    def score(self, model: WALSModel, fold: ValidationFold, score_fn: Callable | None) -> float:
        """The objective on one fold's validation matrix."""
        if self.k is None:
            held = fold.validation.tocoo()
            predicted = model.predict(held.row, held.col)
            return rating_metrics(predicted, held.data)[self.objective]
        metrics = evaluate(score_fn or model.score_users, fold.train, fold.validation, k=self.k)
        return float(metrics[self.objective])

    def __call__(self, trial: Any) -> float:
        wals_config, blend, bayes = self.configs(self.search_space.sample(trial))
        values = [
            self._posterior_value(trial, index, fold, wals_config, bayes)
            if bayes.enabled
            else self._fold_value(trial, index, fold, wals_config, blend)
            for index, fold in enumerate(self.folds)
        ]
        trial.set_user_attr("fold_values", [float(v) for v in values])
        return float(np.mean(values))

    def _fold_value(
        self,
        trial: Any,
        index: int,
        fold: ValidationFold,
        wals_config: WALSConfig,
        blend: BlendConfig,
    ) -> float:
        """Train on one fold; the first fold reports to the pruner (every `report_every` epochs).

        The blend is scored with the same formula as the final model (`blend_scores`); its
        item-item matrix is built once per fold and blend values, before WALS trains.
        """
        item_item = self._fold_item_item(index, fold, blend) if blend.enabled else None
        weighted = None
        if item_item is not None:
            weighted = neighbourhood_scores(fold.train, item_item, blend.item_item_weight)
        curve: list[float] = []

        def on_epoch(epoch: int, model: WALSModel) -> bool:
            # Only the first fold reports to the pruner; the others need their last epoch only.
            reporting = index == 0 and epoch >= self.report_from and epoch % self.report_every == 0
            if not reporting and epoch != wals_config.epochs:
                return False
            score_fn = blended_score_fn(model.score_users, fold.train, item_item, blend, weighted)
            curve.append(self.score(model, fold, score_fn))
            if index == 0:
                self._report(trial, curve[-1], epoch)
            return False

        # The loss is not the objective: skipping it saves a pass over the data per epoch.
        train_wals(fold.train, wals_config, callback=on_epoch, log=_TRIAL_LOG, track_loss=False)
        return curve[-1]

    def _fold_item_item(self, index: int, fold: ValidationFold, blend: BlendConfig) -> Any:
        """The fold's item-item matrix for these blend values (the last one is kept per fold)."""
        method, _ = resolve_method(blend, fold.train.shape[1])
        key = (method, *(getattr(blend, name) for name in METHOD_KEYS.get(method, ())))
        cached = self._item_item.get(index)
        if cached is None or cached[0] != key:
            cached = (key, item_item_matrix(fold.train, blend))
            self._item_item[index] = cached
        return cached[1]

    def _posterior_value(
        self,
        trial: Any,
        index: int,
        fold: ValidationFold,
        wals_config: WALSConfig,
        bayes: BayesConfig,
    ) -> float:
        """Sample on one fold; the validation error of the running average of the samples.

        The averaged model itself is not built (its SVD compression is for the final model):
        the running average of the validation pairs' predictions is exactly what it predicts
        before compression.
        """
        held = fold.validation.tocoo()
        average = PairAverage(held.row, held.col)
        value = math.nan
        for sample in gibbs_samples(fold.train, wals_config, bayes, log=_TRIAL_LOG):
            value = rating_metrics(average.add(sample), held.data)[self.objective]
            if index == 0:
                self._report(trial, value, sample.number)
        return value

    def _report(self, trial: Any, value: float, step: int) -> None:
        """Report to the pruner every `report_every` steps; raises TrialPruned to stop."""
        import optuna

        if step % self.report_every:
            return
        trial.report(value, step)
        if trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}: {value:.5f}")


# --------------------------------------------------------------------------------------------
# Workers
# --------------------------------------------------------------------------------------------


class _Heartbeat:
    """Records a trial's heartbeat every interval in a daemon thread (RDB storages only)."""

    def __init__(self, storage: Any, trial_id: int) -> None:
        from optuna.storages import RDBStorage

        self._stop = threading.Event()
        self._thread = None
        interval = storage.get_heartbeat_interval() if isinstance(storage, RDBStorage) else None
        if interval is not None:
            storage.record_heartbeat(trial_id)

            def beat() -> None:
                while not self._stop.wait(interval):
                    storage.record_heartbeat(trial_id)

            self._thread = threading.Thread(target=beat, daemon=True, name=f"heartbeat-{trial_id}")
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _fail_stale_trials(study: Any) -> None:
    """Fail RUNNING trials whose heartbeat is older than the grace period (and queue retries)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def _pop_waiting_trial(storage: Any, study: Any) -> int | None:
    """Atomically take a WAITING trial (the storage refuses a trial another worker took)."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    # Optuna's own pop (Study._pop_waiting_trial_id) falls back to creating a new trial, which
    # would overrun the budget when another worker took the last one; this one never creates.
    # Only public storage methods: trial ids come from the study id and the trial's number.
    study_id = storage.get_study_id_from_name(study.study_name)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
        try:
            if storage.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                return trial_id
        except UpdateFinishedTrialError:
            continue
    return None


def _best_value(study: Any) -> float | None:
    from optuna.trial import TrialState

    values = [t.value for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    if not values:
        return None
    return min(values) if study.direction.name == "MINIMIZE" else max(values)


def run_worker(
    storage: Any,
    study_name: str,
    objective: Callable[[Any], float],
    config: TuningConfig,
    *,
    worker: str = "worker",
    poll_seconds: float = 1.0,
) -> dict[str, Any]:
    """Run queued trials of the study until none is left, or `config.timeout` has passed.

    A worker never creates a trial: it pops WAITING ones, so any number of workers on one
    storage run exactly the queued trials. When the queue is empty but trials are still
    RUNNING, it waits for them: one of them may belong to a dead worker, and after the grace
    period the heartbeat check fails it and queues a retry, which this worker then runs.

    Returns:
        {"worker", "trials_run", "complete", "pruned", "failed", "best_value", "timed_out"}.
    """
    from optuna.trial import TrialState

    started = time.monotonic()
    counts = {"complete": 0, "pruned": 0, "failed": 0}
    bar = None
    components = _sampler_and_pruner(config, worker)
    study = _load_study(storage, study_name, config, components)
    if config.progress:
        finished_states = (TrialState.COMPLETE, TrialState.PRUNED)
        done = len(study.get_trials(deepcopy=False, states=finished_states))
        bar = progress_bar(
            True, total=config.n_trials, initial=done, desc=f"Tuning ({worker})", unit="trial"
        )
    timed_out = False
    try:
        while True:
            if config.timeout is not None and time.monotonic() - started > config.timeout:
                timed_out = True
                break
            # A fresh study object per trial: the sampler sees the other workers' trials.
            study = _load_study(storage, study_name, config, components)
            _fail_stale_trials(study)
            trial_id = _pop_waiting_trial(storage, study)
            if trial_id is None:
                running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
                if not running:
                    break
                time.sleep(poll_seconds)
                continue
            state = _run_trial(storage, study, trial_id, objective, worker)
            counts[state] += 1
            if bar is not None:
                best = _best_value(study)
                bar.update(1)
                if best is not None:
                    bar.set_postfix(best=f"{best:.5f}")
    finally:
        if bar is not None:
            bar.close()
    return {
        "worker": worker,
        "trials_run": sum(counts.values()),
        **counts,
        "best_value": _best_value(study),
        "timed_out": timed_out,
    }


def _run_trial(storage: Any, study: Any, trial_id: int, objective: Callable, worker: str) -> str:
    import optuna
    from optuna.trial import TrialState

    trial = optuna.Trial(study, trial_id)
    trial.set_user_attr("worker", worker)
    heartbeat = _Heartbeat(storage, trial_id)
    try:
        value = objective(trial)
    except optuna.TrialPruned:
        heartbeat.stop()
        study.tell(trial, state=TrialState.PRUNED)
        logger.info("trial %d pruned", trial.number)
        return "pruned"
    except WalsrecError as error:
        # A numerically failed configuration is a bad trial, not a failed study.
        heartbeat.stop()
        trial.set_user_attr("error", str(error))
        study.tell(trial, state=TrialState.FAIL)
        logger.warning("trial %d failed: %s", trial.number, error)
        return "failed"
    except BaseException:
        heartbeat.stop()
        study.tell(trial, state=TrialState.FAIL)
        raise
    heartbeat.stop()
    if not math.isfinite(value):
        study.tell(trial, state=TrialState.FAIL)
        return "failed"
    study.tell(trial, value)
    logger.info("trial %d: %s = %.5f %s", trial.number, "value", value, trial.params)
    return "complete"


# --------------------------------------------------------------------------------------------
# Results
# --------------------------------------------------------------------------------------------


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


def split_params(
    params: Mapping[str, Any],
    base_wals: Mapping[str, Any],
    base_blend: Mapping[str, Any] | None,
    base_bayes: Mapping[str, Any] | None = None,
) -> tuple[WALSConfig, BlendConfig, BayesConfig]:
    """The WALS, blend and bayes configs of a set of params over the base values.

    Raises:
        ConfigError: an invalid value, or posterior averaging of a WALS config that is not a
            rating model (see `BayesConfig.check_model`).
    """
    wals = {**base_wals, **{k: v for k, v in params.items() if k in WALS_KEYS}}
    blend = {**(base_blend or {}), **{k: v for k, v in params.items() if k in BLEND_KEYS}}
    bayes = {**(base_bayes or {}), **{k: v for k, v in params.items() if k in BAYES_KEYS}}
    wals_config, bayes_config = WALSConfig.from_dict(wals), BayesConfig.from_dict(bayes)
    bayes_config.check_model(wals_config)
    return wals_config, BlendConfig.from_dict(blend), bayes_config


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
