"""ZenML steps: thin adapters over the walsrec core, one step per module, grouped by stage."""

import materializers  # noqa: F401  (registers the plain-file materializers)
from steps.data.data_loader import data_loader
from steps.data.data_profiler import data_profiler
from steps.data.data_splitter import data_splitter
from steps.deployment.bento_builder import bento_builder
from steps.deployment.model_packager import model_packager
from steps.inference.model_loader import model_loader
from steps.inference.pair_scorer import pair_scorer
from steps.inference.recommendation_writer import recommendation_writer
from steps.training.model_evaluator import model_evaluator
from steps.training.model_promoter import model_promoter
from steps.training.model_trainer import model_trainer
from steps.tuning.best_params_selector import best_params_selector
from steps.tuning.test_pair_predictor import test_pair_predictor
from steps.tuning.tuned_model_trainer import tuned_model_trainer
from steps.tuning.tuning_study import tuning_study
from steps.tuning.tuning_worker import tuning_worker

__all__ = [
    "bento_builder",
    "best_params_selector",
    "data_loader",
    "data_profiler",
    "data_splitter",
    "model_evaluator",
    "model_loader",
    "model_packager",
    "model_promoter",
    "model_trainer",
    "pair_scorer",
    "recommendation_writer",
    "test_pair_predictor",
    "tuned_model_trainer",
    "tuning_study",
    "tuning_worker",
]
