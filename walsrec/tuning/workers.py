"""Workers: pop and run a study's queued trials.

`run_worker` runs trials until the queue is empty (or the time budget is spent), with a
heartbeat: a trial whose worker died (SIGKILL, a lost pod) is marked FAIL once its heartbeat is
older than the grace period, and a copy of it goes back into the queue.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Callable
from typing import Any

from walsrec.errors import WalsrecError
from walsrec.progress import progress_bar
from walsrec.tuning.config import TuningConfig
from walsrec.tuning.study import _fail_stale_trials, _load_study, _sampler_and_pruner

logger = logging.getLogger(__name__)


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
