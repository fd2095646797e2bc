"""ZenML pipelines: training, tuning, batch inference, deployment and continuous training.

Each pipeline is imported when it is first named, so `from pipelines import
batch_inference_pipeline` loads neither the training steps nor TensorFlow.
"""

from walsrec.lazy import lazy_attributes

_MODULES = {
    "batch_inference_pipeline": "pipelines.batch_inference",
    "continuous_training_pipeline": "pipelines.continuous_training",
    "deployment_pipeline": "pipelines.deployment",
    "training_pipeline": "pipelines.training",
    "tuning_pipeline": "pipelines.tuning",
}

__all__ = sorted(_MODULES)

__getattr__ = lazy_attributes(__name__, _MODULES)
