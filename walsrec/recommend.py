"""Top-k recommendations and pair predictions in the users' original ids."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from walsrec.errors import DataError
from walsrec.model import RecommenderModel
from walsrec.topk import chunk_size_for, recommend

RECOMMENDATION_COLUMNS = ["user_id", "item_id", "score", "rank"]


def recommendations_frame(
    model: RecommenderModel,
    *,
    k: int = 10,
    users: Sequence[str] | None = None,
    exclude_seen: bool = True,
    chunk_size: int | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Top-k for every known user (or the given ones) as `user_id,item_id,score,rank`.

    Args:
        model: the trained model.
        k: how many items per user.
        users: original user ids; None means every user the model knows.
        exclude_seen: leave out items the user interacted with in training.
        chunk_size: users scored at once (bounds memory); None: `chunk_size_for` the catalogue.

    Returns:
        The recommendations (rank starts at 1) and the requested users the model does not know
        (they get no rows; the caller reports them).
    """
    if users is None:
        user_indices = np.arange(model.n_users)
        unknown: list[str] = []
    else:
        index = model.user_index()
        unknown = [str(user) for user in users if str(user) not in index]
        user_indices = np.array([index[str(u)] for u in users if str(u) in index], dtype=np.int64)
    if chunk_size is None:
        chunk_size = chunk_size_for(model.n_items)
    items, scores = recommend(
        model.score_users,
        user_indices,
        k,
        exclude=model.seen if exclude_seen else None,
        chunk_size=chunk_size,
    )
    valid = items >= 0
    rows, ranks = np.nonzero(valid)
    frame = pd.DataFrame(
        {
            "user_id": model.user_ids[user_indices[rows]],
            "item_id": model.item_ids[items[valid]],
            "score": scores[valid].astype(np.float32),
            "rank": (ranks + 1).astype(np.int32),
        }
    )
    return frame, unknown


def predict_pairs(model: RecommenderModel, pairs: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """Predicted scores for (user_id, item_id) pairs.

    Pairs whose user or item the model does not know get no prediction; they are counted and
    returned as the second value rather than silently dropped.
    """
    missing = {"user_id", "item_id"} - set(pairs.columns)
    if missing:
        raise DataError(f"pairs need columns user_id and item_id; missing: {sorted(missing)}")
    user_index = pd.Series(model.user_index(), dtype="int64")
    item_index = pd.Series(model.item_index(), dtype="int64")
    users = pairs["user_id"].astype(str).map(user_index)
    items = pairs["item_id"].astype(str).map(item_index)
    known = users.notna() & items.notna()
    known_pairs = pairs.loc[known, ["user_id", "item_id"]].astype(str).reset_index(drop=True)
    known_pairs["prediction"] = model.predict(
        users[known].to_numpy(np.int64), items[known].to_numpy(np.int64)
    ).astype(np.float32)
    return known_pairs, int((~known).sum())


def write_table(frame: pd.DataFrame, path: str) -> str:
    """Write CSV or Parquet by the file's extension; returns the format used."""
    lowered = str(path).lower()
    if lowered.endswith((".parquet", ".pq")):
        frame.to_parquet(path, index=False)
        return "parquet"
    frame.to_csv(path, index=False)
    return "csv"


def load_user_list(path: str) -> list[str]:
    """User ids from a text file (one per line) or a CSV/Parquet file with a `user_id` column."""
    lowered = str(path).lower()
    try:
        if lowered.endswith((".parquet", ".pq")):
            frame = pd.read_parquet(path)
        elif lowered.endswith(".csv"):
            frame = pd.read_csv(path, dtype=str)
        else:
            with open(path, encoding="utf-8") as handle:
                return [line.strip() for line in handle if line.strip()]
    except FileNotFoundError as exc:
        raise DataError(f"user list {path} does not exist") from exc
    if "user_id" not in frame.columns:
        raise DataError(f"{path}: needs a user_id column; found {list(frame.columns)}")
    return frame["user_id"].dropna().astype(str).str.strip().tolist()
