"""Streaming top-k output: the same rows as the in-memory frame, written chunk by chunk, with
memory bounded by a chunk rather than by the number of users."""

from __future__ import annotations

import dataclasses
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest

from walsrec.errors import ConfigError
from walsrec.inference.recommend import recommendations_frame, write_recommendations
from walsrec.models.recommender import RecommenderModel
from walsrec.synthetic import random_model


def _model(n_users: int, n_items: int, seed: int = 0) -> RecommenderModel:
    """Random factors, 5 seen items per user; item ids hold a comma (CSV must quote them)."""
    model = random_model(n_users, n_items, n_factors=8, seen_per_user=5, seed=seed)
    item_ids = np.array([f"i,{index}" for index in range(n_items)], dtype=object)
    user_ids = np.array([f"u{index * 7}" for index in range(n_users)], dtype=object)
    return dataclasses.replace(model, item_ids=item_ids, user_ids=user_ids)


@pytest.mark.parametrize("suffix", ["parquet", "csv"])
def test_streamed_rows_equal_the_in_memory_frame(tmp_path: Path, suffix: str) -> None:
    model = _model(1_000, 300)
    expected, _ = recommendations_frame(model, k=7)
    path = tmp_path / f"recs.{suffix}"
    written = write_recommendations(model, str(path), k=7, output_chunk_users=128)

    assert (written.rows, written.users, written.chunks) == (7_000, 1_000, 8)  # ceil(1000/128)
    if suffix == "parquet":
        assert pq.ParquetFile(path).metadata.num_row_groups == 8  # one row group per chunk
        got = pd.read_parquet(path)
    else:  # item ids hold a comma: quoted where needed, like pandas' to_csv
        got = pd.read_csv(path, dtype={"user_id": str, "item_id": str})
    pd.testing.assert_frame_equal(
        got.astype({"user_id": str, "item_id": str}),
        expected.astype({"user_id": str, "item_id": str}),
        check_dtype=False,
    )
    # Seen items never come back.
    rows = got.merge(pd.DataFrame({"user_id": model.user_ids, "u": range(1_000)}), on="user_id")
    items = rows["item_id"].str.slice(2).astype(int).to_numpy()
    assert not np.asarray(model.seen[rows["u"].to_numpy(), items]).any()


def test_a_user_list_keeps_its_order_and_reports_unknown_users(tmp_path: Path) -> None:
    model = _model(200, 50)
    path = tmp_path / "some.csv"
    written = write_recommendations(
        model, str(path), k=3, users=["u14", "nobody", "u0"], output_chunk_users=1
    )
    got = pd.read_csv(path, dtype=str)
    assert got["user_id"].tolist() == ["u14"] * 3 + ["u0"] * 3
    assert written.unknown_users == ["nobody"] and written.users == 2 and written.chunks == 2


def _peak_bytes(function) -> int:
    tracemalloc.start()
    try:
        function()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_memory_is_bounded_by_the_chunk_not_the_users(tmp_path: Path) -> None:
    """100,000 users x 10 items each: the in-memory frame holds all 1,000,000 rows at once,
    streaming one chunk of 2,000 users (numpy's and Python's allocations, traced)."""
    model = _model(100_000, 300)
    in_memory = _peak_bytes(lambda: recommendations_frame(model, k=10))
    path = tmp_path / "r.parquet"
    streamed = _peak_bytes(
        lambda: write_recommendations(model, str(path), k=10, output_chunk_users=2_000)
    )
    assert pq.ParquetFile(path).metadata.num_rows == 1_000_000
    assert streamed < in_memory / 5, (streamed, in_memory)


def test_a_bad_chunk_size_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="output.chunk_users"):
        write_recommendations(_model(5, 5), str(tmp_path / "x.csv"), output_chunk_users=0)
