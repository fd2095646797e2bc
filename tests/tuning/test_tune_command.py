"""`python run.py tune` as a user types it, on data the project was not tuned on."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml
from zenml.client import Client

from tests.conftest import PROJECT_ROOT
from walsrec.synthetic import generate_interactions


def test_tune_command_on_a_large_play_count_catalogue(tmp_path: Path) -> None:
    """Above the dense item-item limit (once every trial failed there), with heavy-tailed
    counts: the study completes, the defaults and ranges follow the data profile, and a study
    cut short by its time budget says so."""
    data = generate_interactions(1_000, 8_000, 40_000, feedback="counts", seed=3)
    path = data.write_parquet(tmp_path / "plays.parquet")
    storage = f"sqlite:///{tmp_path / 'optuna.db'}"
    result = subprocess.run(
        [sys.executable, "run.py", "tune", "--data", str(path), "--n-trials", "4"]
        + ["--storage", storage],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Trials:         4 of 4 trials ran" in result.stdout
    assert "no completed trial" not in result.stdout + result.stderr

    run_name = re.search(r"Pipeline run:\s+(\S+)", result.stdout).group(1)
    run = Client().get_pipeline_run(run_name)
    profile = run.steps["data_profiler"].outputs["data_profile"][0].load()
    assert profile.kind == "counts" and profile.n_items > 5_000
    best = run.steps["best_params_selector"].outputs["best_params"][0].load()
    assert best["states"].get("COMPLETE", 0) + best["states"].get("PRUNED", 0) == 4
    assert "FAIL" not in best["states"]
    # Counts: the log weighting's epsilon is tuned; the catalogue gets the sparse kNN blend.
    assert "epsilon" in best["best_params"] and "neighbors" in best["best_params"]
    assert "item_item_l2" not in best["best_params"]
    model = run.model_version.get_model_artifact("recommender").load()
    assert model.config["observed_weighting"] == "log"
    assert model.metadata["auto_values"]["observed_weighting"]["value"] == "log"
    assert model.metadata["tuning"]["budget"]["cut_short"] is False

    # The same study with a larger budget and a one-second time limit: it resumes (4 trials
    # kept), runs one more and says in words that the budget stopped it.
    config = yaml.safe_load((PROJECT_ROOT / "configs/tune.yaml").read_text())
    config["parameters"]["tuning"]["timeout"] = 1
    config_path = tmp_path / "tune.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))  # keeps the study name
    again = subprocess.run(
        [sys.executable, "run.py", "tune", "--config", str(config_path), "--data", str(path)]
        + ["--n-trials", "20", "--storage", storage],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert again.returncode == 0, again.stderr[-3000:]
    # How many trials fit in one second depends on the machine: at least one more ran, and
    # the message counts the rest as queued.
    budget = re.search(r"Trials:\s+(\d+) of 20 trials ran; the time budget", again.stdout)
    assert budget, re.findall(r"Trials:.*", again.stdout)
    ran = int(budget.group(1))
    assert 4 < ran < 20
    assert f"{20 - ran} still queued: run the same command again to continue" in again.stdout
