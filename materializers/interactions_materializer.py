"""Validated interactions as Parquet plus a JSON sidecar (flags, titles, validation report)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path
from typing import Any, ClassVar

from zenml.enums import ArtifactType, VisualizationType
from zenml.materializers.base_materializer import BaseMaterializer

from materializers.directory import download_folder, upload_folder
from walsrec.data import Interactions, RejectedRow, ValidationReport
from walsrec.lazy import LazyModule

pd = LazyModule("pandas")

FORMAT_VERSION = 1

# Rows hashed at a time by `content_hash`: pandas' row hashes cost 8 bytes a row, so a block of
# 2^20 rows holds 8 MiB whatever the number of interactions.
_HASH_BLOCK_ROWS = 1 << 20


def _metadata(data: Interactions) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "has_ratings": data.has_ratings,
        "has_timestamps": data.has_timestamps,
        "source": data.source,
        "feedback": data.feedback,
        "item_titles": data.item_titles,
        "report": data.report.to_dict(),
    }


def content_hash(data: Interactions) -> str:
    """SHA-256 of what the artifact holds: every row's values (in order), the column names and
    dtypes, and the metadata (flags, titles, validation report).

    ZenML puts it in the cache key of every step that takes the artifact, in place of the
    artifact's id: interactions read again from an unchanged file (a touched file, `--no-cache`
    on the loader) leave the split and everything after it cached.
    """
    frame = data.frame
    digest = hashlib.sha256()
    digest.update(json.dumps(_metadata(data), sort_keys=True, default=str).encode())
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(str(len(frame)).encode())
    for start in range(0, len(frame), _HASH_BLOCK_ROWS):
        block = frame.iloc[start : start + _HASH_BLOCK_ROWS]
        digest.update(pd.util.hash_pandas_object(block, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def save_interactions(data: Interactions, directory: Path) -> None:
    """Write interactions as `interactions.parquet` and `metadata.json`."""
    data.frame.to_parquet(directory / "interactions.parquet", index=False)
    (directory / "metadata.json").write_text(json.dumps(_metadata(data)), encoding="utf-8")


def load_interactions_folder(directory: Path) -> Interactions:
    """Read what `save_interactions` wrote."""
    metadata = json.loads((directory / "metadata.json").read_text(encoding="utf-8"))
    if metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"unsupported interactions format {metadata.get('format_version')}")
    report = dict(metadata["report"])
    fields = {f.name for f in dataclasses.fields(ValidationReport)}
    report = {key: value for key, value in report.items() if key in fields}
    report["examples"] = [RejectedRow(**row) for row in report.get("examples", [])]
    return Interactions(
        frame=pd.read_parquet(directory / "interactions.parquet"),
        has_ratings=metadata["has_ratings"],
        has_timestamps=metadata["has_timestamps"],
        item_titles=metadata["item_titles"],
        report=ValidationReport(**report),
        source=metadata["source"],
        # Artifacts written before event logs existed hold ratings or binary feedback.
        feedback=metadata.get("feedback", "ratings" if metadata["has_ratings"] else "binary"),
    )


class InteractionsMaterializer(BaseMaterializer):
    """Stores `Interactions`; the validation report is shown as the artifact's visualization."""

    ASSOCIATED_TYPES: ClassVar[tuple[type[Any], ...]] = (Interactions,)
    ASSOCIATED_ARTIFACT_TYPE: ClassVar[ArtifactType] = ArtifactType.DATA

    def save(self, data: Interactions) -> None:
        upload_folder(
            self.artifact_store,
            lambda folder: save_interactions(data, folder),
            os.path.join(self.uri, "interactions"),
        )

    def load(self, data_type: type[Any]) -> Interactions:
        return download_folder(
            self.artifact_store, load_interactions_folder, os.path.join(self.uri, "interactions")
        )

    def compute_content_hash(self, data: Interactions) -> str | None:
        return content_hash(data)

    def save_visualizations(self, data: Interactions) -> dict[str, VisualizationType]:
        path = os.path.join(self.uri, "validation_report.md")
        with self.artifact_store.open(path, "w") as handle:
            handle.write("# Validation report\n\n```\n" + data.report.summary() + "\n```\n")
        return {path: VisualizationType.MARKDOWN}

    def extract_metadata(self, data: Interactions) -> dict[str, Any]:
        report = data.report
        metadata = {
            "source": data.source,
            "feedback": data.feedback,
            "rows_read": report.rows_read,
            "rows_kept": report.rows_kept,
            "rows_rejected": sum(report.rejected.values()),
            "duplicates_dropped": report.duplicates_dropped,
        }
        if report.is_event_log:
            metadata["events_aggregated"] = report.events_aggregated
            metadata["event_counts"] = dict(report.event_counts)
        return metadata
