"""Evaluate the model against the popularity baseline on held-out data."""

from __future__ import annotations

import hashlib
import logging
from typing import Annotated, Any

import numpy as np
from zenml import get_step_context, step
from zenml.client import Client
from zenml.enums import MetadataResourceTypes
from zenml.models import RunMetadataResource
from zenml.types import HTMLString, MarkdownString

from walsrec.config import EvaluationConfig
from walsrec.data import Dataset
from walsrec.model import RecommenderModel
from walsrec.reports import metrics_table_markdown, model_versions_html
from walsrec.training import evaluate_model

logger = logging.getLogger(__name__)


def test_fingerprint(dataset: Dataset) -> str:
    """A hash of the test pairs in original ids: metrics compare only on the same test set.

    The SHA-256 of the sorted "user<TAB>item" lines, fed in `_FINGERPRINT_CHUNKS`-line chunks
    (each chunk's lines joined by newlines). `_sorted_pair_chunks` computes the same bytes
    from integer ranks and Arrow's string kernels: 0.3 s instead of 3 s for the 5.0M test
    pairs of ML-20M.
    """
    if dataset.test is None:
        return ""
    test = dataset.test.tocoo()
    chunks = _sorted_pair_chunks(dataset.user_ids, dataset.item_ids, test.row, test.col)
    if chunks is not None:
        digest = hashlib.sha256()
        for chunk in chunks:
            digest.update(chunk)
        return digest.hexdigest()[:16]
    return _test_fingerprint_strings(dataset, test)


# Test pairs per update of the fingerprint's hash (the chunking is part of its definition).
_FINGERPRINT_CHUNKS = 100_000


def _sorted_pair_chunks(
    user_ids: np.ndarray, item_ids: np.ndarray, rows: np.ndarray, cols: np.ndarray
) -> list[memoryview] | None:
    """The bytes `_test_fingerprint_strings` hashes, chunk by chunk, or None when an id holds a
    character at or below TAB (then sorting by (user, item) differs from sorting the lines)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    users = pa.array([str(value) for value in user_ids], pa.large_string())
    items = pa.array([str(value) for value in item_ids], pa.large_string())
    for ids in (users, items):
        if len(ids) and pc.any(pc.match_substring_regex(ids, "[\\x00-\\x09]")).as_py():
            return None
    # A line sorts as its (user, item) pair: TAB is below every character of an id, so a user
    # id that is a prefix of another sorts first either way. Code-point order (NumPy's) is
    # UTF-8 byte order (Arrow's).
    user_rank = np.empty(len(users), np.int64)
    user_rank[np.argsort(np.asarray(user_ids, dtype=str), kind="stable")] = np.arange(len(users))
    item_rank = np.empty(len(items), np.int64)
    item_rank[np.argsort(np.asarray(item_ids, dtype=str), kind="stable")] = np.arange(len(items))
    order = np.argsort(user_rank[rows] * max(len(items), 1) + item_rank[cols], kind="stable")
    lines = pc.binary_join_element_wise(
        users.take(pa.array(rows[order])),
        items.take(pa.array(cols[order])),
        pa.scalar("\t", pa.large_string()),
    )
    # Each line with its newline after it; a chunk is its lines' bytes without the last one.
    terminated = pc.binary_join_element_wise(
        lines, pa.scalar("", pa.large_string()), pa.scalar("\n", pa.large_string())
    )
    if isinstance(terminated, pa.ChunkedArray):
        terminated = terminated.combine_chunks()
    offsets = np.frombuffer(terminated.buffers()[1], np.int64)[terminated.offset :]
    data = memoryview(terminated.buffers()[2]) if terminated.buffers()[2] else memoryview(b"")
    n_pairs = len(terminated)
    n_chunks = max(1, n_pairs // _FINGERPRINT_CHUNKS)
    # np.array_split's boundaries: the first n % parts chunks are one longer.
    sizes = np.full(n_chunks, n_pairs // n_chunks)
    sizes[: n_pairs % n_chunks] += 1
    bounds = np.r_[0, np.cumsum(sizes)]
    chunks = []
    for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
        if stop > start:
            chunks.append(data[offsets[start] : offsets[stop] - 1])
        else:
            chunks.append(memoryview(b""))
    return chunks


def _test_fingerprint_strings(dataset: Dataset, test: Any) -> str:
    """`test_fingerprint` by NumPy string arrays (its definition; ids with control characters)."""
    users = np.asarray(dataset.user_ids, dtype=str)[test.row]
    items = np.asarray(dataset.item_ids, dtype=str)[test.col]
    pairs = np.sort(np.char.add(np.char.add(users, "\t"), items))
    digest = hashlib.sha256()
    for chunk in np.array_split(pairs, max(1, len(pairs) // 100_000)):
        digest.update("\n".join(chunk.tolist()).encode())
    return digest.hexdigest()[:16]


# The newest versions the comparison plot shows.
_PLOTTED_VERSIONS = 30
# Charted in the comparison plot when computed (every ranking metric at the configured k).
_PLOTTED_METRICS = ("ndcg", "precision", "recall", "map", "hit_rate", "coverage", "rmse", "mae")


def _same_recommender_as(model_version: Any, recommender_id: Any) -> int | None:
    """The oldest other version of the model holding the same `recommender` artifact (linked,
    not copied: the trainer was served from the cache), or None."""
    client = Client()
    links = client.list_model_version_artifact_links(artifact_version_id=recommender_id, size=50)
    numbers = []
    for other_id in {link.model_version for link in links.items} - {model_version.id}:
        other = client.get_model_version(model_version_name_or_number_or_id=other_id)
        if other.model.id == model_version.model.id:
            numbers.append(other.number)
    return min(numbers) if numbers else None


def _comparison_rows(model_version: Any, evaluation: dict) -> list[dict]:
    """The model's newest versions with their logged metrics (this run's from `evaluation`)."""
    page = Client().list_model_versions(
        model=model_version.model.id, sort_by="desc:number", size=_PLOTTED_VERSIONS
    )
    rows = []
    for version in reversed(page.items):
        current = version.id == model_version.id
        logged = evaluation if current else version.run_metadata
        metrics = ((logged.get("metrics") or {}) if isinstance(logged, dict) else {}).get("wals")
        if not metrics:
            continue  # a version whose run died before evaluation
        rows.append(
            {
                "version": version.number,
                "stage": version.stage,
                "metrics": metrics,
                "comparable": logged.get("test_fingerprint") == evaluation["test_fingerprint"],
                "current": current,
            }
        )
    return rows


def _plotted_metrics(metrics: dict) -> list[str]:
    wals = metrics.get("wals") or {}
    return [name for name in wals if name.split("@")[0] in _PLOTTED_METRICS]


@step(enable_cache=False)  # the metrics go on this run and its model version, cached or not
def model_evaluator(
    model: RecommenderModel, dataset: Dataset, evaluation: EvaluationConfig
) -> tuple[
    Annotated[dict, "metrics"],
    Annotated[MarkdownString, "metrics_table"],
    Annotated[HTMLString, "model_versions"],
]:
    """Ranking metrics (and RMSE/MAE with ratings) for WALS and popularity on the test part.

    The metrics are logged as metadata of this step, its pipeline run (both shown by the
    open-source dashboard) and the run's model version (where the promoter reads them). When
    the trainer was served from the cache, the version's `recommender` is the artifact an
    earlier version already holds (linked, not copied): `same_recommender_as` names that
    version in the metadata. `model_versions` charts the model's versions on their metrics.
    """
    k = int(EvaluationConfig.from_dict(evaluation).k)
    metrics = evaluate_model(model, dataset, k=k, part="test")
    if not metrics:
        logger.warning("no test interactions: nothing to evaluate")
    table = metrics_table_markdown(metrics) if metrics else "No test data.\n"
    logger.info("test metrics (k=%d):\n%s", k, table)
    result = {"metrics": metrics, "test_fingerprint": test_fingerprint(dataset), "k": k}

    context = get_step_context()
    metadata: dict[str, Any] = dict(result)
    resources = [
        RunMetadataResource(id=context.step_run.id, type=MetadataResourceTypes.STEP_RUN),
        RunMetadataResource(id=context.pipeline_run.id, type=MetadataResourceTypes.PIPELINE_RUN),
    ]
    model_version = context.model_version
    plot = "<html><body><p>This run has no model version.</p></body></html>"
    if model_version is not None:
        resources.append(
            RunMetadataResource(id=model_version.id, type=MetadataResourceTypes.MODEL_VERSION)
        )
        same = _same_recommender_as(model_version, context.inputs["model"][0].id)
        if same is not None:
            metadata["same_recommender_as"] = same
            logger.info(
                "model version %s holds the recommender of version %s (training was served "
                "from the cache; the artifact is linked, not copied)",
                model_version.number,
                same,
            )
        plot = model_versions_html(
            _comparison_rows(model_version, result),
            _plotted_metrics(metrics),
            (metrics or {}).get("popularity") or {},
        )
    Client().create_run_metadata(
        metadata=metadata, resources=resources, publisher_step_id=context.step_run.id
    )
    return result, MarkdownString(table), HTMLString(plot)
