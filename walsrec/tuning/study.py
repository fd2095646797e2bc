"""Where a study lives and how it is created.

`resolve_storage_url` / `open_storage`: the env var `WALSREC_TUNING_STORAGE`, else
`tuning.storage` (any SQLAlchemy URL, or `journal:///path` for a file-based journal that several
local processes can share), else a SQLite file in the project's state directory; passwords are
never logged (`redact_url`). `prepare_study` creates or loads the study (its name derived from
the config, `derive_study_name`) and tops up its queue to exactly `n_trials` trials: every trial
is created here, once, as WAITING, and a worker (`walsrec.tuning.workers`) only ever runs a trial
it popped atomically from the storage.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import warnings
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from walsrec.errors import ConfigError, WalsrecError
from walsrec.tuning.config import TuningConfig

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


def default_state_dir() -> Path:
    """$WALSREC_STATE_DIR, else `state/` at the project root (gitignored)."""
    configured = os.environ.get(STATE_DIR_ENV)
    if configured:
        return Path(configured).expanduser()
    return Path(__file__).resolve().parents[2] / "state"


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


def _fail_stale_trials(study: Any) -> None:
    """Fail RUNNING trials whose heartbeat is older than the grace period (and queue retries)."""
    import optuna

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


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
