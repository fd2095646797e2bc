"""A model version -> the BentoML model store -> a Bento -> its archive in the artifact store.

One step, so one pod on Kubeflow: BentoML's model store and Bento store are folders of the
process that writes them (`$BENTOML_HOME`), gone with the pod. Packaging in one pod and building
in the next failed (`Model walsrec:<tag> could not be found locally`); here the model is saved,
the Bento built and exported in the same process, and the archive leaves the pod as an artifact
in the stack's artifact store.
"""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import get_step_context, log_metadata, step

from materializers.bento_archive import BentoArchive, export_folder
from serving.packaging import (
    BENTO_MODEL_NAME,
    build_bento,
    docker_engine_problem,
    export_bento,
    push_image,
    save_to_model_store,
)
from steps.inference.model_loader import resolve_model_version

logger = logging.getLogger(__name__)


@step(enable_cache=False)  # "production" moves; the Bento must hold the version it points to now
def bento_builder(
    model_name: str | None = None,
    version: str | None = "production",
    bento_model_name: str = BENTO_MODEL_NAME,
    promoted: bool | None = None,
    item_metadata: str | None = None,
    build: bool = True,
    export: bool = True,
) -> tuple[
    Annotated[str | None, "bento_model_tag"],
    Annotated[str | None, "bento_tag"],
    Annotated[BentoArchive | None, "bento_archive"],
]:
    """Save `model_name` at `version` as a BentoML model (plain files, labelled with the ZenML
    model, version and key metrics), build the service's Bento with it (`bentoml build`) and
    `bentoml export` the Bento as the `bento_archive` artifact; `run.py serve --model-version`
    imports and serves that archive on any machine that reaches the artifact store.

    With a container registry in the active stack and a Docker engine where the step runs, the
    Bento is also containerized and pushed (`<registry>/walsrec-service:<bento version>`);
    without an engine (a Kubeflow pod) a warning says so and the archive is its only copy.

    Args:
        model_name: the Model Control Plane model (None: this run's model).
        version: "production", "staging", "latest" or a version number (None: this run's
            model version, as continuous training packages the version it just promoted).
        bento_model_name: the BentoML model name the service serves.
        promoted: the promotion step's answer in a continuous-training run: False packages
            nothing (None: package unconditionally).
        item_metadata: a catalogue table packaged with the model for `where` filters.
        build: build a Bento (False: only the BentoML model store, enough for `run.py serve`
            on this machine).
        export: keep the built Bento as the archive artifact.

    Returns:
        The BentoML model tag ("name:version"), the Bento tag ("walsrec:<version>") and the
        archive (stored by ZenML's path materializer); None for what was not made.
    """
    if promoted is False:
        logger.info("not promoted: nothing to package")
        return None, None, None
    if version is None or model_name is None:
        model = get_step_context().model
        model_name = model_name or model.name
        version = str(model.number) if version is None else version
    model_version = resolve_model_version(model_name, version)
    recommender = model_version.get_model_artifact("recommender").load()
    metrics = model_version.run_metadata.get("metrics") or {}
    model_tag = save_to_model_store(
        recommender,
        model_name=model_name,
        model_version=str(model_version.number),
        metrics=metrics,
        bento_model_name=bento_model_name,
        item_metadata=item_metadata,
    )
    logger.info(
        "model %s version %s is BentoML model %s", model_name, model_version.number, model_tag
    )
    if not build:
        return model_tag, None, None
    bento_tag = build_bento(model_tag)
    logger.info("built Bento %s", bento_tag)
    log_metadata(
        metadata={"bento_tag": bento_tag, "bento_model_tag": model_tag},
        artifact_name="bento_tag",
        infer_artifact=True,
    )
    if not export:
        return model_tag, bento_tag, None
    folder = export_folder()  # removed once the archive is in the artifact store
    archive = export_bento(bento_tag, folder / f"{bento_tag.replace(':', '-')}.bento")
    metadata = {
        "bento_tag": bento_tag,
        "bento_model_tag": model_tag,
        "zenml_model": model_name,
        "zenml_version": str(model_version.number),
        "archive_bytes": archive.stat().st_size,
    }
    from zenml.client import Client

    registry = Client().active_stack.container_registry
    if registry is not None:
        problem = docker_engine_problem()
        if problem is None:
            metadata["image"] = push_image(bento_tag, registry.config.uri)
            logger.info("pushed %s", metadata["image"])
        else:  # a pod (no Docker engine inside): the archive is the Bento's only copy
            metadata["image_not_pushed"] = problem
            logger.warning(
                "Bento %s not pushed to %s: no Docker engine here (%s); it is in the artifact "
                "store only", bento_tag, registry.config.uri, problem,
            )  # fmt: skip
    log_metadata(metadata=metadata, artifact_name="bento_archive", infer_artifact=True)
    return model_tag, bento_tag, BentoArchive(archive)  # stored, then its folder removed
