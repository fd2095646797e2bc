"""The registry stays consistent when runs are killed or run at once: each test runs the
commands a user types (`run.py ...` processes) on a ZenML store of its own in a temp dir."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tests.commands import Command, environment, run_command
from tests.conftest import PROJECT_ROOT
from tests.pipelines.conftest import make_config

MODEL = "consistency"


def _train_config(tmp_path: Path, name: str, data: Path, **wals) -> Path:
    config = make_config(
        "train",
        MODEL,
        data={"source": str(data)},
        wals={"epochs": 6, **wals},
        evaluation={"progress": False},
    )
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


_QUERY = """
import json, sys
from zenml.client import Client
client = Client()
versions = client.list_model_versions(model=sys.argv[1], size=100).items
runs = client.list_pipeline_runs(size=100).items
print(json.dumps({
    "versions": {
        str(v.number): {
            "stage": v.stage,
            "has_model": v.get_model_artifact("recommender") is not None,
            "ndcg": ((v.run_metadata.get("metrics") or {}).get("wals") or {}).get("ndcg@10"),
            "promotion": v.run_metadata.get("promotion"),
        }
        for v in versions
    },
    "runs": {r.name: str(r.status) for r in runs},
}))
"""


def _registry(env: dict[str, str]) -> dict:
    """The model's versions and the runs, read from the store by a separate process."""
    result = subprocess.run(
        [sys.executable, "-c", _QUERY, MODEL],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.splitlines()[-1])


def test_a_fresh_store_is_created_once_by_commands_started_together(tmp_path: Path) -> None:
    """Three commands on a store that does not exist yet: once two first runs raced and one
    failed with "The ZenML database has never been migrated with alembic before"."""
    env = environment(tmp_path)
    commands = [Command(env, "cleanup") for _ in range(3)]
    codes = [command.finish(timeout=300) for command in commands]
    outputs = "".join(command.output for command in commands)
    assert codes == [0, 0, 0], outputs[-3000:]
    assert "alembic" not in outputs and "Traceback" not in outputs
    assert outputs.count("Nothing to clean up") == 3


def test_killed_run_then_batch_latest_cleanup_and_nextrun_command(
    ml100k_dir: Path, tmp_path: Path
) -> None:
    """SIGKILL inside the trainer: the run stays `running` in ZenML and its version has no
    model. `batch --model-version latest` then once died with AttributeError on None.load."""
    env = environment(tmp_path)
    config = _train_config(tmp_path, "train", ml100k_dir / "u.data")
    first = run_command(env, "train", "--config", str(config))
    assert first.returncode == 0, first.stderr[-3000:]

    slow = _train_config(tmp_path, "slow", ml100k_dir / "u.data", epochs=40)
    killed = Command(env, "train", "--config", str(slow), "--no-cache")
    killed.wait_for("Step `model_trainer` has started")
    killed.process.send_signal(signal.SIGKILL)
    killed.finish()
    before = _registry(env)
    assert "running" in before["runs"].values()
    assert before["versions"]["2"]["has_model"] is False

    cleanup = run_command(env, "cleanup")
    assert cleanup.returncode == 0, cleanup.stderr[-3000:]
    lines = cleanup.stdout.strip().splitlines()
    (dead_run,) = [name for name, status in before["runs"].items() if status == "running"]
    assert len(lines) == 1 and dead_run in lines[0], cleanup.stdout
    assert f"deleted model {MODEL} version 2" in lines[0]
    after = _registry(env)
    assert after["runs"][dead_run] == "failed"
    assert "2" not in after["versions"]
    assert run_command(env, "cleanup").stdout.startswith("Nothing to clean up")

    # Batch inference from `latest` and the next training both work.
    batch_config = tmp_path / "batch.yaml"
    batch_config.write_text(yaml.safe_dump(make_config("batch_inference", MODEL)))
    recs = tmp_path / "recs.csv"
    batch = run_command(
        env, "batch", "--config", str(batch_config), "--model-version", "latest",
        "--topk-output", str(recs), "-k", "3",
    )  # fmt: skip
    assert batch.returncode == 0, batch.stderr[-3000:]
    assert pd.read_csv(recs)["user_id"].nunique() == 943
    again = run_command(env, "train", "--config", str(config), "--no-cache")
    assert again.returncode == 0, again.stderr[-3000:]
    assert "(completed)" in again.stdout and f"Model version:  {MODEL} version" in again.stdout


def test_a_killed_run_found_by_the_next_command(ml100k_dir: Path, tmp_path: Path) -> None:
    """No `cleanup` typed: the next pipeline command marks the dead run and says so, and
    `latest` never means the version without a model."""
    env = environment(tmp_path)
    config = _train_config(tmp_path, "train", ml100k_dir / "u.data")
    assert run_command(env, "train", "--config", str(config)).returncode == 0
    killed = Command(env, "train", "--config", str(config), "--no-cache")
    killed.wait_for("Step `model_evaluator` has started")
    killed.process.send_signal(signal.SIGKILL)
    killed.finish()
    # Killed after training: its version has a model, so it stays (not production).
    deploy_config = tmp_path / "deploy.yaml"
    deploy_config.write_text(
        yaml.safe_dump(make_config("deployment", MODEL, bento={"bento_model_name": MODEL}))
    )
    deploy = run_command(env, "deploy", "--config", str(deploy_config), "--no-build")
    assert deploy.returncode == 0, deploy.stderr[-3000:]
    assert "had died: marked failed" in deploy.stderr
    assert f"{MODEL}:" in deploy.stdout
    registry = _registry(env)
    assert "running" not in registry["runs"].values()
    assert registry["versions"]["1"]["stage"] == "production"


def test_concurrent_trainings_leave_the_better_model_in_production(
    ml100k_dir: Path, tmp_path: Path
) -> None:
    """Two trainings reach the promoter together (lined up on the promotion lock, which a
    third process holds until both wait for it): the better model ends in production, the
    worse is compared with it. Without the lock both read "no production version yet"."""
    env = environment(tmp_path)
    good = _train_config(tmp_path, "good", ml100k_dir / "u.data")
    weak = _train_config(tmp_path, "weak", ml100k_dir / "u.data", n_factors=4, epochs=2)
    holder = subprocess.Popen(
        [sys.executable, "-c", _HOLD_LOCK, f"promotion:{MODEL}"],
        cwd=PROJECT_ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        for line in holder.stdout:  # ZenML may print its own lines first
            if line.strip() == "held":
                break
        runs = [Command(env, "train", "--config", str(path)) for path in (weak, good)]
        for command in runs:
            command.wait_for("Step `model_promoter` has started")
        time.sleep(1.0)  # both are now polling for the lock
    finally:
        holder.communicate("release\n", timeout=60)
    assert [command.finish() for command in runs] == [0, 0], runs[0].output[-2000:]
    versions = _registry(env)["versions"]
    assert len(versions) == 2
    (production,) = [n for n, v in versions.items() if v["stage"] == "production"]
    best = max(versions, key=lambda n: versions[n]["ndcg"])
    assert production == best
    other = next(n for n in versions if n != best)
    assert versions[other]["ndcg"] < 0.9 * versions[best]["ndcg"]
    # Whichever decided first found no production version; the second compared with it.
    reasons = sorted(v["promotion"]["reason"] for v in versions.values())
    first = [r for r in reasons if "no production version yet" in r]
    second = [r for r in reasons if re.search(r"beats? production \(", r)]
    assert len(first) == 1 and len(second) == 1, reasons


_HOLD_LOCK = """
import sys
from registry.locks import store_lock
from registry.store import open_store
open_store()
with store_lock(sys.argv[1]):
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_rollback_command(ml100k_dir: Path, tmp_path: Path) -> None:
    """rollback: refuses without a previous production version; then goes back one step at a
    time through the production history, saying from which version to which."""
    env = environment(tmp_path)
    nothing = run_command(env, "rollback", "--model", MODEL)
    assert nothing.returncode != 0 and "no production version" in nothing.stderr
    assert "Traceback" not in nothing.stderr
    # Three versions, each better than the last on the same test set: 1 -> 2 -> 3 in production.
    for index, n_factors in enumerate((4, 8, 32)):
        config = _train_config(tmp_path, f"v{index}", ml100k_dir / "u.data", n_factors=n_factors)
        result = run_command(env, "train", "--config", str(config))
        assert result.returncode == 0 and "stage: production" in result.stdout, result.stdout
    first = run_command(env, "rollback", "--model", MODEL)
    assert first.returncode == 0, first.stderr[-2000:]
    assert first.stdout.strip() == (
        f"Rolled back {MODEL}: production was version 3, is now version 2"
    )
    assert (
        run_command(env, "rollback", "--model", MODEL)
        .stdout.strip()
        .endswith("production was version 2, is now version 1")
    )
    last = run_command(env, "rollback", "--model", MODEL)
    assert last.returncode != 0
    assert "version 1 is in production and no earlier production version" in last.stderr
    versions = _registry(env)["versions"]
    assert [n for n, v in versions.items() if v["stage"] == "production"] == ["1"]


def test_a_version_without_a_model_is_never_latest_or_served(train_config) -> None:
    """A version left without a model (its run died in training) is skipped by `latest` and
    refused by number, in words."""
    from zenml.client import Client

    import run as cli
    from pipelines import training_pipeline
    from registry.versions import resolve_model_version
    from walsrec.errors import ConfigError

    trained = cli.run_pipeline(training_pipeline, train_config("modelless"))
    client = Client()
    empty = client.create_model_version(model_name_or_id="modelless", name="left-by-a-kill")
    assert resolve_model_version("modelless", "latest").number == trained.model_version.number
    with pytest.raises(ConfigError, match="holds no 'recommender' artifact.*run.py cleanup"):
        resolve_model_version("modelless", str(empty.number))
