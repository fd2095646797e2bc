"""Top-k recommendations and pair predictions in the users' original ids."""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import IO

import numpy as np

from walsrec.errors import ConfigError, DataError
from walsrec.inference.topk import chunk_size_for, recommend
from walsrec.lazy import LazyModule
from walsrec.models.recommender import RecommenderModel

pd = LazyModule("pandas")
pa = LazyModule("pyarrow")
pq = LazyModule("pyarrow.parquet")

RECOMMENDATION_COLUMNS = ["user_id", "item_id", "score", "rank"]


# Users whose top-k `write_recommendations` computes and writes at once: one Parquet row group
# (or CSV block) of 65,536 * k rows, about 12 MB at k = 10 however many users there are.
OUTPUT_CHUNK_USERS = 1 << 16


def _user_indices(
    model: RecommenderModel, users: Sequence[str] | None
) -> tuple[np.ndarray, list[str]]:
    """Row indices of `users` (every user when None) and the requested ids the model lacks."""
    if users is None:
        return np.arange(model.n_users, dtype=np.int64), []
    index = model.user_index()
    unknown = [str(user) for user in users if str(user) not in index]
    known = np.array([index[str(u)] for u in users if str(u) in index], dtype=np.int64)
    return known, unknown


def _topk_tables(
    model: RecommenderModel,
    users: Sequence[str] | None,
    *,
    k: int,
    exclude_seen: bool,
    chunk_size: int | None,
    output_chunk_users: int | None,
) -> tuple[Iterator[dict[str, np.ndarray]], list[str], int]:
    """The top-k of `users` as columns (`user_id,item_id,score,rank`), one set per
    `output_chunk_users` users (None: one for all), computed as they are taken: only one
    chunk's scores and rows exist at a time.

    Returns:
        The chunks, the requested users the model doesn't know, and the number of known ones.
    """
    user_indices, unknown = _user_indices(model, users)
    step = output_chunk_users or max(len(user_indices), 1)
    return (
        _chunk_tables(model, user_indices, k, exclude_seen, chunk_size, step),
        unknown,
        len(user_indices),
    )


def _chunk_tables(
    model: RecommenderModel,
    user_indices: np.ndarray,
    k: int,
    exclude_seen: bool,
    chunk_size: int | None,
    output_chunk_users: int,
) -> Iterator[dict[str, np.ndarray]]:
    if chunk_size is None:
        chunk_size = chunk_size_for(model.n_items)
    exclude = model.seen if exclude_seen else None
    for start in range(0, max(len(user_indices), 1), output_chunk_users):
        chunk = user_indices[start : start + output_chunk_users]
        items, scores = recommend(
            model.score_users, chunk, k, exclude=exclude, chunk_size=chunk_size
        )
        valid = items >= 0
        rows, ranks = np.nonzero(valid)
        yield {
            "user_id": model.user_ids[chunk[rows]],
            "item_id": model.item_ids[items[valid]],
            "score": scores[valid].astype(np.float32),
            "rank": (ranks + 1).astype(np.int32),
        }


def recommendations_frame(
    model: RecommenderModel,
    *,
    k: int = 10,
    users: Sequence[str] | None = None,
    exclude_seen: bool = True,
    chunk_size: int | None = None,
) -> tuple[pd.DataFrame, list[str]]:
    """Top-k for every known user (or the given ones) as `user_id,item_id,score,rank`, in
    memory (`write_recommendations` streams them to a file instead).

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
    tables, unknown, _ = _topk_tables(
        model, users, k=k, exclude_seen=exclude_seen, chunk_size=chunk_size, output_chunk_users=None
    )
    (columns,) = tables
    return pd.DataFrame(columns), unknown


@dataclass(frozen=True)
class WrittenRecommendations:
    """What `write_recommendations` wrote."""

    path: str
    format: str
    rows: int
    users: int
    unknown_users: list[str]
    chunks: int


def table_format(path: str) -> str:
    """ "parquet" for a .parquet/.pq path, else "csv"."""
    return "parquet" if str(path).lower().endswith((".parquet", ".pq")) else "csv"


@contextlib.contextmanager
def _text_sink(sink: str | IO[bytes]) -> Iterator[IO[str]]:
    if isinstance(sink, str):
        with open(sink, "w", encoding="utf-8", newline="") as handle:
            yield handle
        return
    handle = io.TextIOWrapper(sink, encoding="utf-8", newline="")
    try:
        yield handle
    finally:
        handle.flush()
        handle.detach()  # the caller closes its own file object


def write_recommendations(
    model: RecommenderModel,
    sink: str | IO[bytes],
    *,
    k: int = 10,
    users: Sequence[str] | None = None,
    exclude_seen: bool = True,
    fmt: str | None = None,
    chunk_size: int | None = None,
    output_chunk_users: int = OUTPUT_CHUNK_USERS,
) -> WrittenRecommendations:
    """Stream the top-k of every user (or `users`) to a CSV or Parquet file as it is computed.

    Users are taken `output_chunk_users` at a time: their scores are computed and selected by
    the fused top-k (`walsrec.inference.topk.recommend`, `chunk_size` users per score block), their
    rows written as one Parquet row group or CSV block, and dropped. Peak memory is one chunk's rows
    plus one score block, whatever the number of users: all scores or all rows never exist at
    once. The rows are those of `recommendations_frame`, in the same order.

    Args:
        model: the trained model.
        sink: a path, or a binary file object (e.g. opened in an artifact store).
        k: items per user.
        users: original user ids; None: every user the model knows.
        exclude_seen: leave out items the user had in training.
        fmt: "csv" or "parquet"; None: from the path's extension (CSV for a file object).
        chunk_size: users per score block; None: `chunk_size_for` the catalogue.
        output_chunk_users: users per written chunk.

    Returns:
        The path, format, row and user counts, and the requested users the model doesn't know.
    """
    name = sink if isinstance(sink, str) else getattr(sink, "name", "<stream>")
    fmt = fmt or (table_format(sink) if isinstance(sink, str) else "csv")
    if fmt not in ("csv", "parquet"):
        raise DataError(f"{name}: output format must be csv or parquet, got {fmt!r}")
    if isinstance(output_chunk_users, bool) or not isinstance(output_chunk_users, int | np.integer):
        raise ConfigError(f"output.chunk_users must be an integer >= 1, got {output_chunk_users!r}")
    if output_chunk_users < 1:
        raise ConfigError(f"output.chunk_users must be an integer >= 1, got {output_chunk_users}")
    schema = pa.schema(
        [("user_id", pa.string()), ("item_id", pa.string()), ("score", pa.float32()),
         ("rank", pa.int32())]
    )  # fmt: skip
    tables, unknown, n_users = _topk_tables(
        model,
        users,
        k=k,
        exclude_seen=exclude_seen,
        chunk_size=chunk_size,
        output_chunk_users=output_chunk_users,
    )
    rows = chunks = 0
    if fmt == "parquet":
        with pq.ParquetWriter(sink, schema) as writer:
            for columns in tables:  # one row group per chunk
                writer.write_table(pa.table(columns, schema=schema))
                rows, chunks = rows + len(columns["rank"]), chunks + 1
    else:
        with _text_sink(sink) as handle:
            for columns in tables:
                # pandas writes the text `write_table` always wrote (quotes only where needed).
                pd.DataFrame(columns).to_csv(handle, index=False, header=chunks == 0)
                rows, chunks = rows + len(columns["rank"]), chunks + 1
    return WrittenRecommendations(str(name), fmt, rows, n_users, unknown, chunks)


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
    fmt = table_format(path)
    if fmt == "parquet":
        frame.to_parquet(path, index=False)
    else:
        frame.to_csv(path, index=False)
    return fmt


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
