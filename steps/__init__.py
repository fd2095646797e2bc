"""ZenML steps: thin adapters over the walsrec core, one step per module, grouped by stage."""

import materializers  # noqa: F401  (registers the plain-file materializers)
from steps.data.data_loader import data_loader
from steps.data.data_splitter import data_splitter
from steps.inference.model_loader import model_loader
from steps.inference.pair_scorer import pair_scorer
from steps.inference.recommendation_writer import recommendation_writer
from steps.training.model_evaluator import model_evaluator
from steps.training.model_promoter import model_promoter
from steps.training.model_trainer import model_trainer

__all__ = [
    "data_loader",
    "data_splitter",
    "model_evaluator",
    "model_loader",
    "model_promoter",
    "model_trainer",
    "pair_scorer",
    "recommendation_writer",
]
