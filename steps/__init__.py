"""ZenML steps: thin adapters over the walsrec core, one step per module, grouped by stage.

Each step is imported when it is first named (`from steps import data_loader`), so a
pipeline loads only its own steps' modules: batch inference and deployment never import
TensorFlow, which only the training and tuning steps need.
"""

import materializers  # noqa: F401  (registers the plain-file materializers)
from walsrec.lazy import lazy_attributes

_MODULES = {
    "data_loader": "steps.data.data_loader",
    "data_profiler": "steps.data.data_profiler",
    "data_splitter": "steps.data.data_splitter",
    "bento_builder": "steps.deployment.bento_builder",
    "pair_scorer": "steps.inference.pair_scorer",
    "recommendation_writer": "steps.inference.recommendation_writer",
    "model_evaluator": "steps.training.model_evaluator",
    "model_promoter": "steps.training.model_promoter",
    "model_trainer": "steps.training.model_trainer",
    "best_params_selector": "steps.tuning.best_params_selector",
    "test_pair_predictor": "steps.tuning.test_pair_predictor",
    "tuned_model_trainer": "steps.tuning.tuned_model_trainer",
    "tuning_study": "steps.tuning.tuning_study",
    "tuning_worker": "steps.tuning.tuning_worker",
}

__all__ = sorted(_MODULES)

__getattr__ = lazy_attributes(__name__, _MODULES)
