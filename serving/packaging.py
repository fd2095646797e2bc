"""Put a trained model into the BentoML model store and build the service's Bento.

Imports neither ZenML nor TensorFlow: the deployment steps call these with a model they already
loaded from the Model Control Plane, and tests call them directly.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

from walsrec.errors import WalsrecError
from walsrec.models.recommender import RecommenderModel

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parent.parent
BENTOFILE = PROJECT_ROOT / "serving" / "bentofile.yaml"
BENTO_MODEL_NAME = "walsrec"
ITEM_TABLE_FILE = "item_table.json"  # read by serving/service.py
KEY_METRICS = ("ndcg@10", "precision@10", "recall@10", "map@10", "hit_rate@10", "rmse")


def model_labels(model_name: str, model_version: str, metrics: dict | None) -> dict[str, str]:
    """BentoML labels (str -> str): the ZenML model and version, and the key test metrics."""
    labels = {"zenml_model": str(model_name), "zenml_version": str(model_version)}
    ours = (metrics or {}).get("wals", metrics or {})
    for name in KEY_METRICS:
        value = ours.get(name)
        if isinstance(value, int | float):
            # Label keys stay plain words: "ndcg_at_10".
            labels[name.replace("@", "_at_")] = f"{value:.6g}"
    return labels


def save_to_model_store(
    model: RecommenderModel,
    *,
    model_name: str,
    model_version: str,
    metrics: dict | None = None,
    bento_model_name: str = BENTO_MODEL_NAME,
    item_metadata: str | Path | None = None,
) -> str:
    """Write `model` into the BentoML model store as plain files (RecommenderModel.save).

    Args:
        model: the trained model.
        model_name: the ZenML model it is a version of (label `zenml_model`).
        model_version: the ZenML version name or number (label `zenml_version`).
        metrics: the evaluation metrics ({"wals": {...}, "popularity": {...}}); key ones become
            labels, all go into the model's metadata.
        bento_model_name: the BentoML model name (the service serves `walsrec:latest`).
        item_metadata: a catalogue table (CSV/TSV/Parquet with `item_id`) whose columns the
            service's `where` conditions filter on (walsrec.inference.item_table); stored beside the
            model as `item_table.json`, its SHA-256 in the BentoML model's metadata.

    Returns:
        The new BentoML model tag, "name:version".

    Raises:
        DataError: the item metadata table is unreadable or invalid (naming file, line, column).
    """
    import bentoml

    from walsrec.inference.item_table import read_item_table

    labels = model_labels(model_name, model_version, metrics)
    metadata = {"metrics": metrics or {}, "trained_at": model.metadata.get("trained_at")}
    table_bytes = None
    if item_metadata is not None:
        table, unknown = read_item_table(item_metadata, model.item_ids)
        table_bytes = json.dumps(table, separators=(",", ":"), allow_nan=False).encode()
        metadata["item_table_sha256"] = hashlib.sha256(table_bytes).hexdigest()
        metadata["item_table_fields"] = sorted(table["fields"])
        if unknown:
            logger.warning(
                "%s: %d rows name items the model does not know; they are not stored",
                item_metadata, unknown,
            )  # fmt: skip
    with bentoml.models.create(bento_model_name, labels=labels, metadata=metadata) as bento_model:
        # The service reports the metrics from the model's own metadata.json.
        with_metrics = dataclasses.replace(
            model, metadata={**model.metadata, "metrics": metrics or {}}
        )
        with_metrics.save(bento_model.path)
        if table_bytes is not None:
            Path(bento_model.path, ITEM_TABLE_FILE).write_bytes(table_bytes)
    logger.info("saved %s to the BentoML model store as %s", model_name, bento_model.tag)
    return str(bento_model.tag)


def build_bento(model_tag: str, *, bentofile: Path = BENTOFILE, timeout: float = 300) -> str:
    """`bentoml build` of the service with `model_tag` packed in; returns the Bento tag.

    A subprocess, as on the command line: the service module reads the model tag when it is
    imported, and a build in this process would reuse an already imported service.
    """
    env = {**os.environ, "WALSREC_MODEL_TAG": model_tag}
    command = [
        sys.executable, "-m", "bentoml", "build", "-f", str(bentofile),
        "--output", "tag", str(PROJECT_ROOT),
    ]  # fmt: skip
    try:
        result = subprocess.run(
            command, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WalsrecError(f"bentoml build did not finish within {timeout:.0f} s") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise WalsrecError("bentoml build failed: " + " | ".join(detail))
    tag = result.stdout.strip().splitlines()[-1].removeprefix("__tag__:")
    logger.info("built Bento %s with model %s", tag, model_tag)
    return tag


def latest_model_tag(bento_model_name: str = BENTO_MODEL_NAME) -> str:
    """The newest BentoML model called `bento_model_name`; a clear error when there is none."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        return str(bentoml.models.get(f"{bento_model_name}:latest").tag)
    except NotFound as exc:
        raise WalsrecError(
            f"no BentoML model {bento_model_name!r} in the model store: package one first "
            "(python run.py deploy)"
        ) from exc


def _bentoml(*args: str, timeout: float = 600) -> str:
    """Run `bentoml ARGS` (this interpreter's BentoML); its stdout, or a WalsrecError."""
    command = [sys.executable, "-m", "bentoml", *args]
    try:
        result = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired as exc:
        raise WalsrecError(f"bentoml {args[0]} did not finish within {timeout:.0f} s") from exc
    if result.returncode != 0:
        detail = (result.stderr or result.stdout).strip().splitlines()[-5:]
        raise WalsrecError(f"bentoml {args[0]} failed: " + " | ".join(detail))
    return result.stdout


def export_bento(bento_tag: str, path: Path) -> Path:
    """`bentoml export`: the Bento as one archive file (model files, code, bentofile)."""
    _bentoml("export", bento_tag, str(path))
    logger.info("exported Bento %s to %s", bento_tag, path)
    return path


def import_bento(archive: Path, bento_tag: str) -> str:
    """Make `bento_tag` available in the local BentoML store, importing `archive` if needed."""
    import bentoml
    from bentoml.exceptions import NotFound

    try:
        bentoml.get(bento_tag)
        return bento_tag
    except NotFound:
        pass
    _bentoml("import", str(archive))
    return bento_tag


def docker_engine_problem(timeout: float = 20) -> str | None:
    """Why no image can be built here (no `docker` command, or no engine answers); None when
    `docker info` works. A Kubeflow pod has no Docker engine: its Bento stays an archive."""
    try:
        result = subprocess.run(
            ["docker", "info"], capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"docker info: {exc}"
    if result.returncode != 0:
        lines = (result.stderr or result.stdout).strip().splitlines()
        return "docker info: " + (lines[-1] if lines else f"exit {result.returncode}")
    return None


def push_image(bento_tag: str, repository: str) -> str:
    """`bentoml containerize` the Bento as `<repository>/walsrec-service:<bento version>` and
    `docker push` it; needs a Docker engine. Returns the image name."""
    image = f"{repository.rstrip('/')}/walsrec-service:{bento_tag.split(':', 1)[1]}"
    _bentoml("containerize", bento_tag, "-t", image, timeout=3600)
    try:
        pushed = subprocess.run(
            ["docker", "push", image], capture_output=True, text=True, timeout=3600, check=False
        )
    except OSError as exc:
        raise WalsrecError(f"cannot push {image}: {exc}") from exc
    if pushed.returncode != 0:
        raise WalsrecError(f"docker push {image} failed: {pushed.stderr.strip()[-500:]}")
    return image
