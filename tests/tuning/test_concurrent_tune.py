"""Two `python run.py tune` at once on the default SQLite study storage: once they raced on
creating its tables (`table alembic_version already exists`) or both topped the queue up (60
trials ran for `n_trials: 50`). Now the second stops with a message naming the alternatives,
and the study never holds more than `n_trials` trials."""

from __future__ import annotations

from pathlib import Path

import optuna

from tests.commands import Command, environment, run_command
from walsrec.synthetic import generate_interactions
from walsrec.tuning import open_storage

N_TRIALS = 12


def test_second_tune_on_one_sqlite_study_stops_and_the_study_keeps_n_trials(
    tmp_path: Path,
) -> None:
    env = environment(tmp_path)  # WALSREC_STATE_DIR: the default SQLite file lives there
    data = generate_interactions(1_000, 1_500, 30_000, feedback="binary", seed=5)
    path = data.write_parquet(tmp_path / "clicks.parquet")
    args = ("tune", "--data", str(path), "--n-trials", str(N_TRIALS))

    first = Command(env, *args)
    first.wait_for("Initiating a new run for the pipeline")
    second = run_command(env, *args, timeout=300)
    assert second.returncode != 0
    message = second.stderr.strip().splitlines()[-1]
    assert message.startswith("error: the tuning storage ")
    assert "optuna.db is in use by pid" in message
    assert "journal:///" in message and "postgresql://" in message and "mysql" in message
    assert "Traceback" not in second.stderr
    assert first.finish() == 0, first.output[-3000:]

    # Once the first is done the same command resumes the study: no trial beyond n_trials.
    again = run_command(env, *args)
    assert again.returncode == 0, again.stderr[-3000:]
    assert f"{N_TRIALS} trials kept, 0 queued" in again.stdout + again.stderr
    storage = open_storage(f"sqlite:///{tmp_path / 'walsrec' / 'optuna.db'}")
    (summary,) = optuna.get_all_study_summaries(storage)
    assert summary.n_trials == N_TRIALS
