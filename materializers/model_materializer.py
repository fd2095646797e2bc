"""The trained recommender as plain files: factors and item-item CSR `.npy`, vocabularies and
metadata JSON."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.materializers.base_materializer import BaseMaterializer

from materializers.directory import download_folder, upload_folder
from walsrec.evaluation.reports import learning_curve_html
from walsrec.models.recommender import FORMAT_VERSION, RecommenderModel


class RecommenderModelMaterializer(BaseMaterializer):
    """Stores a `RecommenderModel` with `RecommenderModel.save` (no pickle, format-versioned)."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (RecommenderModel,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.MODEL

    def save(self, data: RecommenderModel) -> None:
        upload_folder(self.artifact_store, data.save, os.path.join(self.uri, "model"))

    def load(self, data_type: type[Any]) -> RecommenderModel:
        return download_folder(
            self.artifact_store, RecommenderModel.load, os.path.join(self.uri, "model")
        )

    def save_visualizations(self, data: RecommenderModel) -> dict[str, VisualizationType]:
        path = os.path.join(self.uri, "learning_curve.html")
        with self.artifact_store.open(path, "w") as handle:
            handle.write(learning_curve_html(data.metadata.get("history", [])))
        return {path: VisualizationType.HTML}

    def extract_metadata(self, data: RecommenderModel) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "n_users": data.n_users,
            "n_items": data.n_items,
            "n_factors": data.n_factors,
            "blend_weight": float(data.blend_weight),
            "item_item_nnz": 0 if data.item_item is None else int(data.item_item.nnz),
        }
