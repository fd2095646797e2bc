"""Real Optuna storages: resume after SIGKILL (SQLite), two workers on one study (PostgreSQL,
MariaDB, a journal file)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from tests.conftest import PROJECT_ROOT
from tests.tuning.toy_worker import toy_config
from walsrec.tuning import open_storage, prepare_study

POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
MARIADB = "mysql+pymysql://root@127.0.0.1:3306/test"
SERVICES = {
    POSTGRES: "PostgreSQL (127.0.0.1:5432, database test): start it with `service postgresql "
    "start` (or `pg_ctlcluster <version> main start`)",
    MARIADB: "MariaDB (127.0.0.1:3306, database test): start it with `service mariadb start`",
}


def _worker(url: str, study: str, n_trials: int, seconds: float, name: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tests.tuning.toy_worker", url, study, str(n_trials), str(seconds)]
        + [name],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _require(url: str) -> None:
    import sqlalchemy

    try:
        engine = sqlalchemy.create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as error:
        pytest.fail(f"{SERVICES[url]} is not reachable: {type(error).__name__}: {error}")


def _trials(url: str, study: str):
    return optuna.load_study(study_name=study, storage=open_storage(url)).get_trials()


def test_sigkill_mid_trial_then_rerun_keeps_trials_and_completes(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    study, n_trials = f"resume-{uuid.uuid4().hex[:8]}", 6
    prepare_study(open_storage(url), study, toy_config(n_trials))

    worker = _worker(url, study, n_trials, 1.0, "first")
    # Kill it inside its third trial: two trials complete, one RUNNING.
    deadline = time.monotonic() + 120
    for line in worker.stdout:
        if line.startswith("started 2") or time.monotonic() > deadline:
            break
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    before = _trials(url, study)
    complete_before = {t.number: t.value for t in before if t.state == TrialState.COMPLETE}
    running = [t.number for t in before if t.state == TrialState.RUNNING]
    assert len(complete_before) == 2 and running == [2]

    rerun = _worker(url, study, n_trials, 0.1, "second")
    out, err = rerun.communicate(timeout=180)
    assert rerun.returncode == 0, err[-2000:]

    after = {t.number: t for t in _trials(url, study)}
    # Completed trials are kept as they were; the killed one is FAIL (stale heartbeat) and a
    # retry took its place, so the study still has n_trials finished trials.
    for number, value in complete_before.items():
        assert after[number].state == TrialState.COMPLETE and after[number].value == value
    assert after[2].state == TrialState.FAIL
    finished = [t for t in after.values() if t.state == TrialState.COMPLETE]
    assert len(finished) == n_trials
    retries = [t for t in after.values() if t.system_attrs.get("failed_trial") is not None]
    assert len(retries) == 1


@pytest.mark.parametrize("backend", ["postgresql", "mariadb", "journal-file"])
def test_two_workers_share_one_study_with_exactly_the_configured_trials(
    backend: str, tmp_path: Path
) -> None:
    url = {
        "postgresql": POSTGRES,
        "mariadb": MARIADB,
        "journal-file": f"journal://{tmp_path / 'study.log'}",
    }[backend]
    if backend != "journal-file":
        _require(url)
    study, n_trials = f"workers-{backend}-{uuid.uuid4().hex[:8]}", 10
    prepare_study(open_storage(url), study, toy_config(n_trials))
    try:
        workers = [_worker(url, study, n_trials, 0.3, f"w{index}") for index in range(2)]
        ran = []
        for worker in workers:
            out, err = worker.communicate(timeout=240)
            assert worker.returncode == 0, err[-2000:]
            ran.append(int(out.strip().splitlines()[-1].split()[-1]))

        summaries = optuna.get_all_study_summaries(open_storage(url))
        assert [s.study_name for s in summaries].count(study) == 1
        trials = _trials(url, study)
        assert sorted(t.number for t in trials) == list(range(n_trials))
        assert all(t.state == TrialState.COMPLETE for t in trials)
        # Every trial ran exactly once, by one of the two workers.
        assert sum(ran) == n_trials
        assert {t.user_attrs["worker"] for t in trials} <= {"w0", "w1"}
    finally:
        if backend != "journal-file":
            optuna.delete_study(study_name=study, storage=open_storage(url))
