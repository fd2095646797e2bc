"""Validated interactions as plain arrays plus a JSON sidecar (flags, titles, validation report).

Format 2 (written now): each id column as its codes (`<column>.codes.npy`, int32) and its
distinct ids in code order (`<column>.ids.json`), each numeric column as `<column>.npy`, and
`metadata.json` naming the columns in order. Format 1 (one Parquet file of the frame, its ids
as dictionary strings) is still read.
"""

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

np = LazyModule("numpy")
pd = LazyModule("pandas")

FORMAT_VERSION = 2
# Still read: one Parquet file of the frame.
_PARQUET_FORMAT_VERSION = 1


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


def _column_parts(frame: Any) -> list[tuple[str, Any, list | None]]:
    """(name, array, ids) per column in order: an id column (a Categorical) as its codes and
    its distinct ids as str, in code order; a numeric column as its values and None.

    Raises:
        TypeError: a column that is neither (nothing else is stored as plain files).
    """
    parts = []
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            categories = column.cat.categories
            dtype = np.int32 if len(categories) <= np.iinfo(np.int32).max else np.int64
            codes = np.ascontiguousarray(column.cat.codes.to_numpy(), dtype=dtype)
            parts.append((str(name), codes, [str(value) for value in categories]))
        elif column.dtype.kind in "biuf":
            parts.append((str(name), np.ascontiguousarray(column.to_numpy()), None))
        else:
            raise TypeError(
                f"interactions column {name!r} has dtype {column.dtype}: only id columns "
                "(Categoricals) and numeric columns are stored"
            )
    return parts


def content_hash(data: Interactions) -> str:
    """SHA-256 of what the artifact holds: every column's values (an id column as its codes
    and its distinct ids, in order), the column names and dtypes, and the metadata (flags,
    titles, validation report).

    ZenML puts it in the cache key of every step that takes the artifact, in place of the
    artifact's id: interactions read again from an unchanged file (a touched file, `--no-cache`
    on the loader) leave the split and everything after it cached.
    """
    frame = data.frame
    digest = hashlib.sha256()
    digest.update(json.dumps(_metadata(data), sort_keys=True, default=str).encode())
    digest.update(json.dumps([[str(c), str(t)] for c, t in frame.dtypes.items()]).encode())
    digest.update(str(len(frame)).encode())
    for name, array, ids in _column_parts(frame):
        digest.update(json.dumps([name, array.dtype.str, ids]).encode())
        digest.update(memoryview(array).cast("B"))
    return digest.hexdigest()


def save_interactions(data: Interactions, directory: Path) -> None:
    """Write interactions as plain arrays, id lists and `metadata.json` (format 2)."""
    columns = []
    for name, array, ids in _column_parts(data.frame):
        if ids is None:
            np.save(directory / f"{name}.npy", array, allow_pickle=False)
            columns.append({"name": name, "kind": "values", "file": f"{name}.npy"})
            continue
        np.save(directory / f"{name}.codes.npy", array, allow_pickle=False)
        (directory / f"{name}.ids.json").write_text(json.dumps(ids), encoding="utf-8")
        columns.append(
            {"name": name, "kind": "ids", "file": f"{name}.codes.npy", "ids": f"{name}.ids.json"}
        )
    metadata = {**_metadata(data), "columns": columns, "rows": len(data.frame)}
    (directory / "metadata.json").write_text(json.dumps(metadata), encoding="utf-8")


def _read_frame(directory: Path, metadata: dict) -> Any:
    """The frame `save_interactions` wrote: id columns as Categoricals of str (an object
    Index of the ids, as the loader builds them)."""
    columns = {}
    for column in metadata["columns"]:
        array = np.load(directory / column["file"], allow_pickle=False)
        if len(array) != metadata["rows"]:
            raise ValueError(
                f"interactions artifact: {column['file']} holds {len(array)} rows, "
                f"metadata.json says {metadata['rows']}"
            )
        if column["kind"] == "ids":
            ids = json.loads((directory / column["ids"]).read_text(encoding="utf-8"))
            array = pd.Categorical.from_codes(array, categories=pd.Index(ids, dtype=object))
        columns[column["name"]] = array
    return pd.DataFrame(columns, copy=False)


def load_interactions_folder(directory: Path) -> Interactions:
    """Read what `save_interactions` wrote."""
    metadata = json.loads((directory / "metadata.json").read_text(encoding="utf-8"))
    version = metadata.get("format_version")
    if version == FORMAT_VERSION:
        frame = _read_frame(directory, metadata)
    elif version == _PARQUET_FORMAT_VERSION:
        frame = pd.read_parquet(directory / "interactions.parquet")
    else:
        raise ValueError(f"unsupported interactions format {version}")
    report = dict(metadata["report"])
    fields = {f.name for f in dataclasses.fields(ValidationReport)}
    report = {key: value for key, value in report.items() if key in fields}
    report["examples"] = [RejectedRow(**row) for row in report.get("examples", [])]
    return Interactions(
        frame=frame,
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
