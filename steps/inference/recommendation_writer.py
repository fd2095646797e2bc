"""Write top-k recommendations for every user (or a list of users) to CSV or Parquet."""

from __future__ import annotations

import logging
from typing import Annotated

import pandas as pd
from zenml import log_metadata, step

from walsrec.config import OutputConfig
from walsrec.model import RecommenderModel
from walsrec.recommend import load_user_list, recommendations_frame, write_table

logger = logging.getLogger(__name__)


@step(enable_cache=False)
def recommendation_writer(
    model: RecommenderModel, output: dict
) -> Annotated[pd.DataFrame, "recommendations"]:
    """Top-k per user in original ids, columns `user_id,item_id,score,rank`.

    Args:
        model: the trained model.
        output: the `output:` section: `k`, optional `users_path` (a file with one user id per
            line, or a CSV with a user_id column), `topk_path` (CSV or Parquet by extension),
            `exclude_seen` (default true).
    """
    config = OutputConfig.from_dict(output)
    users = load_user_list(config.users_path) if config.users_path else None
    frame, unknown = recommendations_frame(
        model, k=int(config.k), users=users, exclude_seen=bool(config.exclude_seen)
    )
    if unknown:
        logger.warning(
            "%d requested users are unknown to the model and got no recommendations (first: %s)",
            len(unknown),
            ", ".join(unknown[:5]),
        )
    path = config.topk_path
    if path:
        fmt = write_table(frame, path)
        logger.info(
            "wrote %d recommendations for %d users to %s (%s)",
            len(frame),
            frame["user_id"].nunique(),
            path,
            fmt,
        )
    log_metadata(
        metadata={"rows": len(frame), "unknown_users": len(unknown), "path": path or ""},
        infer_artifact=True,
    )
    return frame
