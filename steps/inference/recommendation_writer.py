"""Write top-k recommendations for every user (or a list of users) to CSV or Parquet."""

from __future__ import annotations

import dataclasses
import logging
import os
from typing import Annotated

from zenml import get_step_context, log_metadata, step
from zenml.client import Client

from walsrec.config import OutputConfig
from walsrec.inference.recommend import load_user_list, write_recommendations
from walsrec.models.recommender import RecommenderModel

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def recommendation_writer(
    model: RecommenderModel, output: OutputConfig
) -> Annotated[dict, "recommendations"]:
    """Top-k per user in original ids, columns `user_id,item_id,score,rank`, streamed to a file
    chunk by chunk (`walsrec.inference.recommend.write_recommendations`): memory is bounded by a
    chunk, not by the number of users.

    Args:
        model: the trained model.
        output: the `output:` section: `k`, optional `users_path` (a file with one user id per
            line, or a CSV with a user_id column), `topk_path` (CSV or Parquet by extension;
            without it, `topk.parquet` in this step's output folder in the artifact store),
            `exclude_seen` (default true), `chunk_users` (users per written chunk).

    Returns:
        Where the rows went and how many there are (`path`, `format`, `rows`, `users`,
        `unknown_users`); the rows themselves are in the file, not in an artifact.
    """
    config = OutputConfig.from_dict(output)
    users = load_user_list(config.users_path) if config.users_path else None
    options = {
        "k": int(config.k),
        "users": users,
        "exclude_seen": bool(config.exclude_seen),
        "output_chunk_users": int(config.chunk_users),
    }
    if config.topk_path:
        written = write_recommendations(model, config.topk_path, **options)
    else:
        folder = get_step_context().get_output_artifact_uri("recommendations")
        store = Client().active_stack.artifact_store
        store.makedirs(folder)
        path = os.path.join(folder, "topk.parquet")
        with store.open(path, "wb") as handle:
            written = dataclasses.replace(
                write_recommendations(model, handle, fmt="parquet", **options), path=path
            )
    unknown = written.unknown_users
    if unknown:
        logger.warning(
            "%d requested users are unknown to the model and got no recommendations (first: %s)",
            len(unknown),
            ", ".join(unknown[:5]),
        )
    logger.info(
        "wrote %d recommendations for %d users to %s (%s, %d chunks)",
        written.rows,
        written.users,
        written.path,
        written.format,
        written.chunks,
    )
    summary = {
        "path": written.path,
        "format": written.format,
        "rows": written.rows,
        "users": written.users,
        "unknown_users": len(unknown),
    }
    log_metadata(metadata=summary, infer_artifact=True)
    return summary
