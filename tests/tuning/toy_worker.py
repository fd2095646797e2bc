"""A tuning worker process for the storage tests: the real worker loop, a cheap objective.

python -m tests.tuning.toy_worker URL STUDY N_TRIALS SECONDS_PER_TRIAL WORKER_NAME

The objective sleeps (so a test can kill the process mid-trial) and returns a value that
depends on the sampled parameter only. Storage, queue, heartbeat and worker loop are the ones
the pipeline uses.
"""

from __future__ import annotations

import sys
import time

from walsrec.tuning import SearchSpace, TuningConfig, open_storage, run_worker

SPACE = {"regularization": {"type": "float", "low": 1.0, "high": 100.0, "log": True}}


def toy_config(n_trials: int) -> TuningConfig:
    """Fast heartbeat so a killed worker's trial goes stale within seconds."""
    return TuningConfig(
        search_space=SearchSpace.from_dict(SPACE),
        n_trials=n_trials,
        heartbeat_interval=1,
        grace_period=3,
        pruning=False,
        progress=False,
    )


def main() -> None:
    url, study_name, n_trials, seconds, worker = sys.argv[1:6]
    config = toy_config(int(n_trials))

    def objective(trial) -> float:
        value = trial.suggest_float("regularization", 1.0, 100.0, log=True)
        print(f"started {trial.number}", flush=True)
        time.sleep(float(seconds))
        return -abs(value - 30.0)

    storage = open_storage(url, heartbeat_interval=1, grace_period=3)
    summary = run_worker(storage, study_name, objective, config, worker=worker, poll_seconds=0.5)
    print(f"summary {summary['trials_run']}", flush=True)


if __name__ == "__main__":
    main()
