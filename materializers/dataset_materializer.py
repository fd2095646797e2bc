"""The split dataset (id vocabularies and sparse train/validation/test) as plain files."""

from __future__ import annotations

import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType
from zenml.materializers.base_materializer import BaseMaterializer

from materializers.directory import download_folder, upload_folder
from walsrec.data import Dataset


class DatasetMaterializer(BaseMaterializer):
    """Stores a `Dataset` with `Dataset.save` (.npy and JSON, format-versioned)."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (Dataset,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: Dataset) -> None:
        upload_folder(self.artifact_store, data.save, os.path.join(self.uri, "dataset"))

    def load(self, data_type: type[Any]) -> Dataset:
        return download_folder(self.artifact_store, Dataset.load, os.path.join(self.uri, "dataset"))

    def extract_metadata(self, data: Dataset) -> dict[str, Any]:
        def count(matrix: Any) -> int:
            return 0 if matrix is None else int(matrix.nnz)

        return {
            "n_users": len(data.user_ids),
            "n_items": len(data.item_ids),
            "train_interactions": count(data.train),
            "validation_interactions": count(data.validation),
            "test_interactions": count(data.test),
        }
