"""Build the service's Bento with a packaged model (`bentoml build`, offline-safe)."""

from __future__ import annotations

import logging
from typing import Annotated

from zenml import log_metadata, step

from serving.packaging import build_bento

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def bento_builder(bento_model_tag: str | None) -> Annotated[str | None, "bento_tag"]:
    """Build a Bento of serving/ and walsrec/ with `bento_model_tag` inside.

    Returns:
        The Bento tag ("walsrec:<version>"): `bentoml serve <tag>` runs it anywhere BentoML runs.
        None when no model was packaged (a continuous-training run that did not promote).
    """
    if bento_model_tag is None:
        logger.info("no packaged model: no Bento to build")
        return None
    tag = build_bento(bento_model_tag)
    logger.info("built Bento %s", tag)
    log_metadata(
        metadata={"bento_tag": tag, "bento_model_tag": bento_model_tag}, infer_artifact=True
    )
    return tag
