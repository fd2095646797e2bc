"""ZenML materializers: the project's artifacts as plain files in the artifact store."""

from materializers.dataset_materializer import DatasetMaterializer
from materializers.interactions_materializer import InteractionsMaterializer
from materializers.model_materializer import RecommenderModelMaterializer

__all__ = ["DatasetMaterializer", "InteractionsMaterializer", "RecommenderModelMaterializer"]
