"""The data profile as one JSON file (format-versioned), shown as an HTML table page."""

from __future__ import annotations

import json
import os
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.materializers.base_materializer import BaseMaterializer

from walsrec.profile import DataProfile, default_wals_values


class DataProfileMaterializer(BaseMaterializer):
    """Stores a `DataProfile` as profile.json; its visualization lists the rule defaults."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (DataProfile,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA_ANALYSIS

    def save(self, data: DataProfile) -> None:
        with self.artifact_store.open(os.path.join(self.uri, "profile.json"), "w") as handle:
            json.dump(data.to_dict(), handle, indent=1, sort_keys=True)

    def load(self, data_type: type[Any]) -> DataProfile:
        with self.artifact_store.open(os.path.join(self.uri, "profile.json"), "r") as handle:
            return DataProfile.from_dict(json.load(handle))

    def save_visualizations(self, data: DataProfile) -> dict[str, VisualizationType]:
        path = os.path.join(self.uri, "profile.html")
        chosen = {
            key: f"{value} ({why})" for key, (value, why) in default_wals_values(data).items()
        }
        with self.artifact_store.open(path, "w") as handle:
            handle.write(data.to_html(chosen))
        return {path: VisualizationType.HTML}

    def extract_metadata(self, data: DataProfile) -> dict[str, Any]:
        return {
            "kind": data.kind,
            "n_users": data.n_users,
            "n_items": data.n_items,
            "n_interactions": data.n_interactions,
            "density": data.density,
        }
