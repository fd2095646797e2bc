"""ZenML used as its users expect, through the commands: a second identical `run.py` is served
from the cache up to training, metrics are step and run metadata, and `run.py batch` reads the
production recommender from the Model Control Plane (a lazy input, no copy) and streams its
output."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from zenml.client import Client
from zenml.enums import ArtifactType, ExecutionStatus

import run as cli
from tests.conftest import PROJECT_ROOT
from walsrec.synthetic import generate_interactions

MODEL = "cache-cli"
UPSTREAM = ["data_loader", "data_splitter", "data_profiler", "model_trainer", "model_evaluator"]


IMPORTTIME = ("-X", "importtime")
TENSORFLOW_IMPORTED = re.compile(r"^import time:.*\|\s+tensorflow$", re.MULTILINE)
BENTOML_IMPORTED = re.compile(r"^import time:.*\|\s+bentoml$", re.MULTILINE)
# What a run served from the cache never needs: the test fingerprint is stored with the dataset
# (walsrec/data/fingerprint.py), and scipy.linalg is imported on first use.
DATA_LIBRARIES_IMPORTED = re.compile(
    r"^import time:.*\|\s+(pandas|pyarrow|scipy\.linalg)$", re.MULTILINE
)


def _run_cli(*args: str, python_options: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    result = subprocess.run(
        [sys.executable, *python_options, "run.py", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "Traceback" not in result.stdout + result.stderr
    return result


def _config(tmp_path: Path, name: str, **output: object) -> Path:
    config = cli.load_config(cli.CONFIGS / f"{name}.yaml")
    if "model" in config:
        config["model"]["name"] = MODEL
    else:
        config["parameters"]["model_name"] = MODEL
    config["parameters"].setdefault("output", {}).update(output)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _newest_training_run():
    client = Client()
    version = client.list_model_versions(model=MODEL, sort_by="desc:number", size=1).items[0]
    links = client.list_model_version_pipeline_run_links(model_version_id=version.id)
    return client.get_pipeline_run(links.items[0].pipeline_run.id), version


def _statuses(run) -> dict[str, str]:
    return {name: str(step.status) for name, step in run.steps.items()}


@pytest.fixture(scope="module")
def data_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Not MovieLens: 1,500 users x 400 items of synthetic ratings."""
    path = tmp_path_factory.mktemp("cache") / "interactions.csv"
    generate_interactions(1_500, 400, 40_000, seed=3).write_csv(path)
    return path


def test_second_identical_run_is_served_from_the_cache(data_file: Path, tmp_path: Path) -> None:
    config = str(_config(tmp_path, "train"))
    # -X importtime: every module the command imports is listed on stderr.
    first = _run_cli("--config", config, "--data", str(data_file), python_options=IMPORTTIME)
    assert "From the cache" not in first.stdout
    run_1, version_1 = _newest_training_run()

    second = _run_cli("--config", config, "--data", str(data_file), python_options=IMPORTTIME)
    assert f"From the cache: {', '.join(UPSTREAM)}" in second.stdout
    assert "Same model as:  version 1" in second.stdout
    assert "does not beat production" in second.stdout
    # No warning about step names the config sets but the DAG lacks (test_data_loader, ...).
    assert "cannot be applied" not in second.stdout + second.stderr
    # The cached run trains nothing, so it never imports TensorFlow (seconds of the command).
    assert TENSORFLOW_IMPORTED.search(first.stderr)
    assert not TENSORFLOW_IMPORTED.search(second.stderr)
    assert DATA_LIBRARIES_IMPORTED.search(first.stderr)
    assert not DATA_LIBRARIES_IMPORTED.findall(second.stderr)
    # Nor BentoML, which ZenML's BentoML integration would import (cli/runs.py), in either run.
    assert not BENTOML_IMPORTED.search(first.stderr + second.stderr)
    # TensorFlow's start-up lines are left out (walsrec/tensorflow_import.py).
    assert "absl::InitializeLog" not in first.stdout + first.stderr
    run_2, version_2 = _newest_training_run()
    statuses = _statuses(run_2)
    assert all(statuses[name] == ExecutionStatus.CACHED for name in UPSTREAM), statuses
    # Promotion ran: the version has its metrics (the cached evaluation's), and wasn't
    # promoted on a tie.
    assert statuses["model_promoter"] == ExecutionStatus.COMPLETED
    assert version_2.number == version_1.number + 1
    assert Client().get_model_version(MODEL, version_2.number).stage is None
    metadata = version_2.run_metadata
    assert metadata["same_recommender_as"] == version_1.number
    assert metadata["metrics"] == version_1.run_metadata["metrics"]
    # The same recommender artifact, linked to both versions: not a copy.
    recommender = version_2.get_model_artifact("recommender")
    assert recommender.id == version_1.get_model_artifact("recommender").id

    # Metrics are step and run metadata too (what the open-source dashboard shows).
    ndcg = metadata["metrics"]["wals"]["ndcg@10"]
    assert run_2.run_metadata["metrics"]["wals"]["ndcg@10"] == ndcg
    assert run_2.steps["model_promoter"].run_metadata["metrics"]["wals"]["ndcg@10"] == ndcg
    # The comparison plot charts both versions, drawn after promotion: v1 is production.
    plot = run_2.steps["model_promoter"].outputs["model_versions"][0]
    assert plot.visualizations
    page = plot.load()
    assert ">v1<" in page and ">v2<" in page and "ndcg@10" in page


def test_a_touched_file_rereads_a_changed_file_retrains(data_file: Path, tmp_path: Path) -> None:
    config = str(_config(tmp_path, "train"))
    _run_cli("--config", config, "--data", str(data_file))  # cached or not: a baseline

    # Same bytes, newer mtime: the loader reads it again, its content hash keeps the rest cached.
    stat = data_file.stat()
    os.utime(data_file, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    _run_cli("--config", config, "--data", str(data_file))
    statuses = _statuses(_newest_training_run()[0])
    assert statuses["data_loader"] == ExecutionStatus.COMPLETED
    assert statuses["data_splitter"] == statuses["model_trainer"] == ExecutionStatus.CACHED

    # Changed content: everything reruns.
    frame = pd.read_csv(data_file)
    frame.iloc[: len(frame) - 500].to_csv(data_file, index=False)
    _run_cli("--config", config, "--data", str(data_file))
    statuses = _statuses(_newest_training_run()[0])
    assert statuses["data_splitter"] == statuses["model_trainer"] == ExecutionStatus.COMPLETED


def test_batch_reads_the_production_recommender_lazily(data_file: Path, tmp_path: Path) -> None:
    _run_cli("--config", str(_config(tmp_path, "train")), "--data", str(data_file))
    client = Client()
    production = client.get_model_version(MODEL, "production")
    recommender = production.get_model_artifact("recommender")
    models_before = client.list_artifact_versions(type=ArtifactType.MODEL, size=1).total

    out = tmp_path / "recs.parquet"
    config = _config(tmp_path, "batch_inference", chunk_users=400)
    result = _run_cli("batch", "--config", str(config), "--topk-output", str(out))
    assert f"Model version: {MODEL} version {production.number}" in result.stdout

    # No model copy stored; the run is linked to the version whose recommender it read.
    assert client.list_artifact_versions(type=ArtifactType.MODEL, size=1).total == models_before
    links = client.list_model_version_pipeline_run_links(model_version_id=production.id)
    runs = [client.get_pipeline_run(link.pipeline_run.id) for link in links.items]
    batch = [run for run in runs if run.name.startswith("batch_inference_pipeline")]
    assert len(batch) == 1
    writer = batch[0].steps["recommendation_writer"]
    assert [artifact.id for artifact in writer.inputs["model"]] == [recommender.id]
    assert writer.model_version.id == production.id

    # Streamed: one Parquet row group per 400 users.
    parquet = pq.ParquetFile(out)
    n_users = recommender.load().n_users
    assert parquet.metadata.num_rows == n_users * 10
    assert parquet.metadata.num_row_groups == -(-n_users // 400)


def test_batch_on_a_version_without_recommender_is_one_clear_line(tmp_path: Path) -> None:
    client = Client()
    client.create_model(name="no-recommender")
    empty = client.create_model_version(model_name_or_id="no-recommender")
    config = cli.load_config(cli.CONFIGS / "batch_inference.yaml")
    config["parameters"]["model_name"] = "no-recommender"
    path = tmp_path / "batch.yaml"
    path.write_text(yaml.safe_dump(config))
    # `latest` is the newest version holding a model (registry/versions.py): there is none.
    # A version named by number that holds none is refused naming it and `run.py cleanup`.
    for version, message in [
        ("latest", "has no version 'latest' with a trained model"),
        (str(empty.number), f"version {empty.number} ({empty.number}) holds no 'recommender'"),
    ]:
        result = subprocess.run(
            [sys.executable, "run.py", "batch", "--config", str(path), "--model-version", version],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode != 0
        assert message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1
        assert "Traceback" not in result.stdout + result.stderr
