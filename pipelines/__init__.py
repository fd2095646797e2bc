"""ZenML pipelines: training and batch inference."""

from pipelines.batch_inference import batch_inference_pipeline
from pipelines.training import training_pipeline

__all__ = ["batch_inference_pipeline", "training_pipeline"]
