"""Keep a built Bento where the serving side can take it: an archive artifact in the stack's
artifact store, and an image in the stack's container registry when one is configured."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Annotated

from zenml import log_metadata, step

from serving.packaging import export_bento, push_image

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def bento_exporter(bento_tag: str | None) -> Annotated[Path | None, "bento_archive"]:
    """`bentoml export` the Bento into the artifact store (linked to this run's model version);
    `run.py serve --model-version production` imports and serves it on any machine.

    With a container registry in the active stack, the Bento is also containerized and pushed
    (`<registry>/walsrec-service:<bento version>`; needs a Docker engine).

    Returns:
        The archive (stored by ZenML's path materializer); None when nothing was built.
    """
    if bento_tag is None:
        logger.info("no Bento built: nothing to export")
        return None
    folder = Path(tempfile.mkdtemp(prefix="walsrec-bento-"))
    archive = export_bento(bento_tag, folder / f"{bento_tag.replace(':', '-')}.bento")
    metadata = {"bento_tag": bento_tag, "archive_bytes": archive.stat().st_size}
    from zenml.client import Client

    registry = Client().active_stack.container_registry
    if registry is not None:
        metadata["image"] = push_image(bento_tag, registry.config.uri)
        logger.info("pushed %s", metadata["image"])
    log_metadata(metadata=metadata, infer_artifact=True)
    return archive
