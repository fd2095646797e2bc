"""The tuning pipeline on the real local ZenML stack, with a tiny budget."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from zenml.client import Client
from zenml.enums import ExecutionStatus

import run as cli
from pipelines import tuning_pipeline
from tests.pipelines.conftest import make_config


def test_tuning_run_completes_and_registers_study_and_best_params(
    ml100k_dir: Path, tmp_path: Path
) -> None:
    topk, predictions = tmp_path / "recs.csv", tmp_path / "pred.csv"
    config = make_config(
        "tune",
        "pipeline-tune",
        data={"source": str(ml100k_dir)},
        tuning={
            "storage": f"sqlite:///{tmp_path / 'optuna.db'}",
            "n_trials": 3,
            "n_workers": 2,
            "progress": False,
            "n_startup_trials": 2,
            "search_space": {
                "n_factors": {"type": "int", "low": 8, "high": 16, "step": 8},
                "regularization": {"type": "float", "low": 5.0, "high": 50.0, "log": True},
                "item_item_weight": {"type": "float", "low": 0.0, "high": 0.6},
                "epochs": 3,
            },
        },
        output={"topk_path": str(topk), "predictions_path": str(predictions)},
    )
    run = cli.run_pipeline(tuning_pipeline, config)
    assert run.status == ExecutionStatus.COMPLETED

    run = Client().get_pipeline_run(run.id)
    assert {"tuning_worker_0", "tuning_worker_1", "best_params_selector"} <= set(run.steps)
    summaries = [
        run.steps[f"tuning_worker_{i}"].outputs["worker_summary"][0].load() for i in (0, 1)
    ]
    assert sum(s["trials_run"] for s in summaries) == 3  # one study, split between workers
    best = run.steps["best_params_selector"].outputs["best_params"][0].load()
    assert best["n_trials"] == 3 and best["best_params"]["n_factors"] in (8, 16)

    # The registered version carries the study name and the best parameters.
    version = run.model_version
    tuning = version.run_metadata["tuning"]
    assert tuning["study_name"] == best["study_name"]
    assert tuning["best_params"] == best["best_params"]
    assert version.run_metadata["metrics"]["wals"]["n_users_evaluated"] == 943
    model = version.get_model_artifact("recommender").load()
    assert model.metadata["tuning"]["study_name"] == best["study_name"]
    # Retrained on train + validation: the model has seen more than the tuning train part.
    dataset = run.steps["data_splitter"].outputs["dataset"][0].load()
    assert model.seen.nnz == dataset.train.nnz + dataset.validation.nnz

    for name in ("trials_table", "optimization_history", "param_importances"):
        page = run.steps["best_params_selector"].outputs[name][0].load()
        assert "<" in page and len(page) > 100
    assert "regularization" in run.steps["best_params_selector"].outputs["trials_table"][0].load()

    recs = pd.read_csv(topk, dtype={"user_id": str, "item_id": str})
    assert recs["user_id"].nunique() == 943
    pred = pd.read_csv(predictions, dtype={"user_id": str, "item_id": str})
    assert len(pred) == dataset.test.nnz and pred["prediction"].notna().all()


def test_rating_tuning_run_registers_a_posterior_average(ml100k_dir: Path, tmp_path: Path) -> None:
    predictions = tmp_path / "pred.csv"
    config = make_config(
        "tune_rating",
        "pipeline-tune-rating",
        data={"source": str(ml100k_dir)},
        bayes={"posterior_samples": 10, "burn_in": 2, "posterior_rank": 32},
        tuning={
            "storage": f"sqlite:///{tmp_path / 'optuna.db'}",
            "n_trials": 2,
            "progress": False,
            "n_startup_trials": 1,
            "report_every": 5,
            "validation_folds": 1,
            "search_space": {"n_factors": {"type": "int", "low": 3, "high": 4}},
        },
        output={"predictions_path": str(predictions)},
    )
    run = cli.run_pipeline(tuning_pipeline, config)
    assert run.status == ExecutionStatus.COMPLETED

    run = Client().get_pipeline_run(run.id)
    best = run.steps["best_params_selector"].outputs["best_params"][0].load()
    assert best["n_trials"] == 2 and best["best_params"]["n_factors"] in (3, 4)
    model = run.model_version.get_model_artifact("recommender").load()
    # The registered artifact is the compressed average, with its sampling recorded.
    assert model.metadata["bayes"]["sampled_factors"] == best["best_params"]["n_factors"]
    rank = min(32, 10 * best["best_params"]["n_factors"])  # exact below 32: 10 samples x d
    assert model.n_factors == model.config["n_factors"] == rank
    metrics = run.model_version.run_metadata["metrics"]["wals"]
    assert 0.85 < metrics["rmse"] < 1.0

    dataset = run.steps["data_splitter"].outputs["dataset"][0].load()
    pred = pd.read_csv(predictions, dtype={"user_id": str, "item_id": str})
    assert len(pred) == dataset.test.nnz and pred["prediction"].between(0, 7).all()
