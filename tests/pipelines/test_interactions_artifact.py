"""The interactions artifact: plain arrays and id lists (format 2), format 1 still read, and a
content hash that follows the values, not the object."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from materializers.interactions_materializer import (
    content_hash,
    load_interactions_folder,
    save_interactions,
)
from walsrec.data import load_source
from walsrec.data.readers import ColumnSpec
from walsrec.synthetic import generate_event_log


def _assert_same(loaded, original) -> None:
    pd.testing.assert_frame_equal(loaded.frame, original.frame, check_categorical=True)
    for name in ("user_id", "item_id"):
        assert list(loaded.frame[name].cat.categories) == list(original.frame[name].cat.categories)
        assert loaded.frame[name].cat.codes.to_numpy().tolist() == (
            original.frame[name].cat.codes.to_numpy().tolist()
        )
    for field in ("has_ratings", "has_timestamps", "item_titles", "source", "feedback"):
        assert getattr(loaded, field) == getattr(original, field)
    assert loaded.report.to_dict() == original.report.to_dict()


@pytest.fixture(scope="module")
def ml100k(ml100k_dir: Path):
    return load_source(ml100k_dir, download=False)


def test_ratings_round_trip_as_plain_files(ml100k, tmp_path: Path) -> None:
    save_interactions(ml100k, tmp_path)
    names = sorted(path.name for path in tmp_path.iterdir())
    assert names == [
        "item_id.codes.npy", "item_id.ids.json", "metadata.json", "rating.npy",
        "timestamp.npy", "user_id.codes.npy", "user_id.ids.json",
    ]  # fmt: skip
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    assert metadata["format_version"] == 2 and metadata["rows"] == 100_000
    assert np.load(tmp_path / "user_id.codes.npy").dtype == np.int32
    assert len(json.loads((tmp_path / "user_id.ids.json").read_text())) == 943
    loaded = load_interactions_folder(tmp_path)
    _assert_same(loaded, ml100k)
    assert loaded.frame["rating"].dtype == np.float32
    assert loaded.frame["timestamp"].dtype == np.int64
    assert content_hash(loaded) == content_hash(ml100k)


def test_event_log_round_trip(tmp_path: Path) -> None:
    events = generate_event_log(300, 200, 5_000, seed=3)
    path = events.write_parquet(tmp_path / "events.parquet")
    columns = ColumnSpec(rating=None, event="event_type", quantity="quantity")
    data = load_source(path, download=False, columns=columns)
    assert data.feedback == "events"
    folder = tmp_path / "artifact"
    folder.mkdir()
    save_interactions(data, folder)
    _assert_same(load_interactions_folder(folder), data)


def test_format_1_parquet_is_still_read(ml100k, tmp_path: Path) -> None:
    save_interactions(ml100k, tmp_path)
    metadata = json.loads((tmp_path / "metadata.json").read_text())
    for column in metadata.pop("columns"):
        for key in ("file", "ids"):
            if key in column:
                (tmp_path / column[key]).unlink()
    metadata.pop("rows")
    metadata["format_version"] = 1
    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    ml100k.frame.to_parquet(tmp_path / "interactions.parquet", index=False)  # what 1 wrote
    loaded = load_interactions_folder(tmp_path)
    assert loaded.frame["user_id"].astype(str).tolist() == (
        ml100k.frame["user_id"].astype(str).tolist()
    )
    assert loaded.frame["rating"].tolist() == ml100k.frame["rating"].tolist()


def test_a_truncated_array_names_its_file(ml100k, tmp_path: Path) -> None:
    save_interactions(ml100k, tmp_path)
    np.save(tmp_path / "rating.npy", np.load(tmp_path / "rating.npy")[:10])
    with pytest.raises(ValueError, match=r"rating\.npy holds 10 rows, metadata\.json says 100000"):
        load_interactions_folder(tmp_path)


def test_content_hash_follows_the_values(ml100k, ml100k_dir: Path) -> None:
    again = load_source(ml100k_dir, download=False)
    assert again is not ml100k
    assert content_hash(again) == content_hash(ml100k)
    changed = again.frame.copy()
    changed.loc[5, "rating"] = changed.loc[5, "rating"] + 1
    again.frame = changed
    assert content_hash(again) != content_hash(ml100k)
    relabelled = ml100k.frame.copy()
    relabelled["item_id"] = relabelled["item_id"].cat.rename_categories(lambda item: f"x{item}")
    again.frame = relabelled
    assert content_hash(again) != content_hash(ml100k)
