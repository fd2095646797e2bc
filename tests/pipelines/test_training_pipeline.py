"""The training and batch inference pipelines on the real local ZenML stack."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
from zenml.client import Client
from zenml.enums import ExecutionStatus, ModelStages

import run as cli
from pipelines import batch_inference_pipeline, training_pipeline
from tests.conftest import PROJECT_ROOT
from tests.pipelines.conftest import make_config
from walsrec.config import OutputConfig
from walsrec.models.recommender import RecommenderModel


def _production(model_name: str):
    return Client().get_model_version(model_name, ModelStages.PRODUCTION)


def test_training_registers_promotes_and_beats_popularity(train_config, tmp_path: Path) -> None:
    topk = tmp_path / "recs.csv"
    config = train_config("pipeline-train", output={"topk_path": str(topk)})
    run = cli.run_pipeline(training_pipeline, config)
    assert run.status == ExecutionStatus.COMPLETED

    run = Client().get_pipeline_run(run.id)
    evaluation = run.steps["model_evaluator"].outputs["metrics"][0].load()
    ours, popularity = evaluation["metrics"]["wals"], evaluation["metrics"]["popularity"]
    assert ours["ndcg@10"] > 1.4 * popularity["ndcg@10"]
    assert ours["n_users_evaluated"] == 943
    assert run.steps["model_promoter"].outputs["promoted"][0].load() is True
    # Typed sections are stored as step parameters with every default (what the dashboard shows).
    stored = run.steps["recommendation_writer"].config.parameters["output"]
    assert stored == {**OutputConfig().model_dump(), "topk_path": str(topk)}
    assert run.steps["model_promoter"].config.parameters["promotion"] == {
        "metric": "ndcg@10",
        "min_improvement": 0.0,
    }

    # The registered version is production, carries its metrics, and its artifact loads.
    version = _production("pipeline-train")
    assert version.run_metadata["metrics"]["wals"]["ndcg@10"] == ours["ndcg@10"]
    model = version.get_model_artifact("recommender").load()
    assert isinstance(model, RecommenderModel)
    assert model.user_factors.shape == (943, 32)
    assert model.item_titles["1"] == "Toy Story (1995)"
    artifact = run.steps["model_trainer"].outputs["recommender"][0]
    assert artifact.type == "ModelArtifact"
    visual_uris = [v.uri for v in artifact.visualizations]
    assert any(uri.endswith("learning_curve.html") for uri in visual_uris)
    assert Path(artifact.uri, "model", "user_factors.npy").is_file()
    assert not list(Path(artifact.uri).rglob("*.pkl"))

    recs = pd.read_csv(topk, dtype={"user_id": str, "item_id": str})
    assert list(recs.columns) == ["user_id", "item_id", "score", "rank"]
    assert recs["user_id"].nunique() == 943
    assert recs.groupby("user_id")["rank"].apply(list).map(lambda r: r == list(range(1, 11))).all()
    # Items seen in training are never recommended.
    seen = model.seen.tocoo()
    seen_pairs = set(zip(model.user_ids[seen.row], model.item_ids[seen.col], strict=True))
    assert not seen_pairs & set(zip(recs["user_id"], recs["item_id"], strict=True))


def _promotion(run) -> tuple[bool, str]:
    run = Client().get_pipeline_run(run.id)
    promoted = run.steps["model_promoter"].outputs["promoted"][0].load()
    return promoted, run.model_version.run_metadata["promotion"]["reason"]


def test_promotion_needs_to_beat_popularity_and_production(train_config) -> None:
    good = cli.run_pipeline(training_pipeline, train_config("pipeline-promote"))
    assert good.status == ExecutionStatus.COMPLETED
    first = _production("pipeline-promote")

    # A crippled model loses to popularity: not promoted, production unchanged.
    worse = cli.run_pipeline(
        training_pipeline, train_config("pipeline-promote", wals={"n_factors": 2, "epochs": 1})
    )
    promoted, reason = _promotion(worse)
    assert promoted is False and "does not beat popularity" in reason
    assert _production("pipeline-promote").number == first.number

    # The same model again (training is deterministic) ties production: a tie is not a win.
    same = train_config("pipeline-promote")
    same["enable_cache"] = False
    promoted, reason = _promotion(cli.run_pipeline(training_pipeline, same))
    assert promoted is False and "does not beat production" in reason
    assert _production("pipeline-promote").number == first.number


def test_batch_inference_from_production(train_config, ml100k_dir: Path, tmp_path: Path) -> None:
    cli.run_pipeline(training_pipeline, train_config("pipeline-batch"))
    users = tmp_path / "users.txt"
    users.write_text("1\n2\nnot-a-user\n")
    topk, predictions = tmp_path / "recs.parquet", tmp_path / "pred.csv"
    config = make_config(
        "batch_inference",
        "pipeline-batch",
        output={
            "users_path": str(users),
            "topk_path": str(topk),
            "k": 5,
            "pairs_path": str(ml100k_dir / "ua.test"),
            "predictions_path": str(predictions),
        },
    )
    run = cli.run_pipeline(batch_inference_pipeline, config)
    assert run.status == ExecutionStatus.COMPLETED
    recs = pd.read_parquet(topk)
    assert sorted(recs["user_id"].unique()) == ["1", "2"]
    assert (recs.groupby("user_id").size() == 5).all()
    pred = pd.read_csv(predictions, dtype={"user_id": str, "item_id": str})
    assert list(pred.columns) == ["user_id", "item_id", "prediction"]
    assert len(pred) > 9000 and pred["prediction"].notna().all()


def _run_cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_trains_on_a_file_pair_and_writes_topk(ml100k_dir: Path, tmp_path: Path) -> None:
    """The exact command an evaluator runs: train on A, evaluate on B, write top-k."""
    out = tmp_path / "RECS.csv"
    result = _run_cli(
        "--data",
        str(ml100k_dir / "ua.base"),
        "--test-data",
        str(ml100k_dir / "ua.test"),
        "--topk-output",
        str(out),
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Model version:" in result.stdout and "ndcg@10" in result.stdout
    peak = re.search(r"Peak memory: +([0-9.]+) GiB RSS", result.stdout)
    assert peak and 0.2 < float(peak.group(1)) < 8, result.stdout[-500:]
    recs = pd.read_csv(out)
    assert len(recs) == 943 * 10


def test_cli_bad_path_is_one_clear_line(tmp_path: Path) -> None:
    result = _run_cli("--data", str(tmp_path / "missing.tsv"))
    assert result.returncode != 0
    assert "missing.tsv" in result.stderr
    assert "Traceback" not in result.stderr + result.stdout


def test_cli_evaluates_a_sample_of_users_when_asked(ml100k_dir: Path, tmp_path: Path) -> None:
    """`evaluation.max_users` in the user's config: the command ranks that many test users,
    says so, and records a fingerprint that only the same sample matches."""
    import yaml

    config = make_config(
        "train",
        "pipeline-sampled",
        wals={"epochs": 3},
        evaluation={"max_users": 200, "progress": False, "validation_every_epoch": False},
    )
    path = tmp_path / "sampled.yaml"
    path.write_text(yaml.safe_dump(config))
    result = _run_cli("--config", str(path), "--data", str(ml100k_dir), "--no-cache")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| n_users_evaluated | 200 | 200 |" in result.stdout
    assert "evaluated a sample of 200 of the 943 test users" in result.stdout + result.stderr
    version = Client().get_model_version("pipeline-sampled", "latest")
    assert version.run_metadata["metrics"]["wals"]["n_users_evaluated"] == 200
    assert version.run_metadata["test_fingerprint"].endswith("/users=200")

    path.write_text(yaml.safe_dump({**config, "parameters": {
        **config["parameters"], "evaluation": {**config["parameters"]["evaluation"], "max_users": 0}
    }}))  # fmt: skip
    result = _run_cli("--config", str(path), "--data", str(ml100k_dir))
    assert result.returncode != 0
    assert "max_users" in result.stderr and "Traceback" not in result.stderr
