"""ZenML materializers: the project's artifacts as plain files in the artifact store."""

from materializers.bento_archive import BentoArchiveMaterializer
from materializers.dataset_materializer import DatasetMaterializer
from materializers.interactions_materializer import InteractionsMaterializer
from materializers.model_materializer import RecommenderModelMaterializer
from materializers.no_pickle import NoPickleMaterializer, install
from materializers.profile_materializer import DataProfileMaterializer

install()  # a type without a materializer stops its step instead of being pickled

__all__ = [
    "BentoArchiveMaterializer",
    "DataProfileMaterializer",
    "DatasetMaterializer",
    "InteractionsMaterializer",
    "NoPickleMaterializer",
    "RecommenderModelMaterializer",
]
