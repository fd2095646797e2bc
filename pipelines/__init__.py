"""ZenML pipelines: training, tuning, batch inference and deployment.

Each pipeline is imported when it is first named, so `from pipelines import
batch_inference_pipeline` loads neither the training steps nor TensorFlow.
"""

import importlib

_MODULES = {
    "batch_inference_pipeline": "pipelines.batch_inference",
    "deployment_pipeline": "pipelines.deployment",
    "training_pipeline": "pipelines.training",
    "tuning_pipeline": "pipelines.tuning",
}

__all__ = sorted(_MODULES)


def __getattr__(name: str):
    if name in _MODULES:
        return getattr(importlib.import_module(_MODULES[name]), name)
    raise AttributeError(f"module 'pipelines' has no attribute {name!r}")
