"""Batch inference and deployment load neither TensorFlow nor the training steps; training
loads TensorFlow only when it trains."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    "statement",
    [
        "import pipelines.batch_inference",
        "import pipelines.deployment",
        "from pipelines import batch_inference_pipeline, deployment_pipeline",
        "from steps import recommendation_writer, pair_scorer, bento_builder",
        "from steps.inference.model_loader import registered_recommender",
    ],
)
def test_inference_and_deployment_imports_leave_tensorflow_out(statement: str, tmp_path) -> None:
    env = {**os.environ, "ZENML_ANALYTICS_OPT_IN": "false", "ZENML_CONFIG_PATH": str(tmp_path)}
    unwanted = ("tensorflow", "steps.training.model_trainer")
    probe = f"{statement}\nimport sys\nprint(sorted(m for m in {unwanted!r} if m in sys.modules))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_training_pipeline_imports_its_steps_but_tensorflow_only_when_training(
    tmp_path,
) -> None:
    """A cached rerun of `python run.py` runs no training step: TensorFlow (seconds to import)
    comes with the first call of walsrec.models.wals.train_wals, not with the pipeline's modules."""
    env = {**os.environ, "ZENML_ANALYTICS_OPT_IN": "false", "ZENML_CONFIG_PATH": str(tmp_path)}
    probe = (
        "from pipelines import training_pipeline\nimport sys\n"
        "print(sorted(m for m in ('steps.training.model_trainer', "
        "'steps.training.model_evaluator', 'tensorflow', 'walsrec.models.wals') "
        "if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=PROJECT_ROOT, env=env, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().splitlines()[-1] == str(
        ["steps.training.model_evaluator", "steps.training.model_trainer"]
    )
