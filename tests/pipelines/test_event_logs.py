"""An e-commerce event log through the command line: read, aggregate, train, register."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from zenml.client import Client

from steps.data.data_loader import loader_options
from tests.conftest import PROJECT_ROOT
from tests.pipelines.conftest import make_config
from walsrec.errors import ConfigError
from walsrec.synthetic import generate_event_log

EVENT_COLUMNS = {"event": "event_type", "quantity": "quantity"}


def test_run_py_trains_on_an_event_log(tmp_path: Path) -> None:
    log = generate_event_log(150, 200, 4_000, seed=11)
    data = log.write_csv(tmp_path / "events.csv")
    config = make_config(
        "train",
        "pipeline-events",
        data={
            "columns": {**EVENT_COLUMNS},
            "events": {"weights": {"view": 1.0, "cart": 3.0, "purchase": 10.0}},
        },
        wals={"epochs": 3},
        evaluation={"progress": False},
    )
    config_path = tmp_path / "events.yaml"
    config_path.write_text(yaml.safe_dump(config), encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "run.py", "--config", str(config_path), "--data", str(data)],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Model version:" in result.stdout and "ndcg@10" in result.stdout

    run_name = re.search(r"Pipeline run:\s+(\S+)", result.stdout).group(1)
    run = Client().get_pipeline_run(run_name)
    interactions = run.steps["data_loader"].outputs["interactions"][0].load()
    # The artifact says it came from an event log, with every event accounted for.
    assert interactions.feedback == "events" and interactions.has_ratings is False
    report = interactions.report
    assert report.rows_read == log.n_events and report.rows_kept == 4_000
    assert report.rows_read == report.rows_kept + report.events_aggregated
    assert report.event_counts["purchase"] == int((log.events == 2).sum())
    dataset = run.steps["data_splitter"].outputs["dataset"][0].load()
    assert dataset.train.nnz + dataset.test.nnz == 4_000
    assert dataset.train.data.max() > 10.0  # purchases weigh more than views
    # The profile knows the values are summed event weights, and the auto values follow it.
    profile = run.steps["data_profiler"].outputs["data_profile"][0].load()
    assert profile.kind == "events" and profile.n_interactions == dataset.train.nnz
    model = run.steps["model_trainer"].outputs["recommender"][0].load()
    assert model.metadata["data_profile"]["kind"] == "events"
    chosen = model.metadata["auto_values"]
    assert chosen["observed_weighting"]["value"] == "log" == model.config["observed_weighting"]
    assert model.config["epsilon"] == chosen["epsilon"]["value"]
    assert chosen["epsilon"]["value"] == pytest.approx(profile.values["median"], rel=1e-2)


def test_loader_options_read_the_events_section() -> None:
    options = loader_options(
        {"columns": EVENT_COLUMNS, "events": {"weights": {"click": 2}, "half_life_days": 7}}
    )
    assert options["columns"].event == "event_type"
    assert options["options"].events.weights == {"click": 2.0}
    assert options["options"].events.half_life_days == 7
    # null values keep the defaults; the defaults have the three usual types.
    defaults = loader_options({"events": {"weights": None, "half_life_days": None}})
    assert set(defaults["options"].events.weights) == {"view", "cart", "purchase"}
    with pytest.raises(ConfigError, match="unknown data.events key"):
        loader_options({"events": {"half_life": 7}})
    with pytest.raises(ConfigError, match="unknown data.columns key"):
        loader_options({"columns": {"evnet": "type"}})
    with pytest.raises(ConfigError, match="data.events.weights.view"):
        loader_options({"events": {"weights": {"view": -1}}})
