"""ZenML pipelines: training and batch inference."""

from pipelines.batch_inference import batch_inference_pipeline
from pipelines.deployment import deployment_pipeline
from pipelines.training import training_pipeline
from pipelines.tuning import tuning_pipeline

__all__ = [
    "batch_inference_pipeline",
    "deployment_pipeline",
    "training_pipeline",
    "tuning_pipeline",
]
