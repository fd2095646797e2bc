"""Splits, minimum-count filter, leakage and Dataset persistence."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from walsrec.data import (
    Dataset,
    Interactions,
    PreprocessConfig,
    SplitConfig,
    build_dataset,
    load_interactions,
    load_source,
)
from walsrec.errors import ConfigError, DataError


@pytest.fixture(scope="module")
def ml100k(ml100k_dir) -> Interactions:
    return load_source(ml100k_dir)


def make_interactions(rows, *, timestamps=True) -> Interactions:
    frame = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    frame = frame.astype({"user_id": "str", "item_id": "str", "rating": "float32"})
    if not timestamps:
        frame = frame.drop(columns="timestamp")
    return Interactions(frame=frame, has_ratings=True, has_timestamps=timestamps, source="mem")


def pairs(dataset: Dataset, matrix) -> set[tuple[str, str]]:
    coo = matrix.tocoo()
    return set(zip(dataset.user_ids[coo.row], dataset.item_ids[coo.col], strict=True))


def per_user_counts(matrix) -> np.ndarray:
    return np.diff(matrix.indptr)


def test_random_split_is_per_user_and_deterministic(ml100k):
    dataset = build_dataset(ml100k, split=SplitConfig(test_ratio=0.25, seed=7))
    again = build_dataset(ml100k, split=SplitConfig(test_ratio=0.25, seed=7))
    other = build_dataset(ml100k, split=SplitConfig(test_ratio=0.25, seed=8))
    assert pairs(dataset, dataset.test) == pairs(again, again.test)
    assert pairs(dataset, dataset.test) != pairs(other, other.test)

    train_counts = per_user_counts(dataset.train)
    test_counts = per_user_counts(dataset.test)
    totals = ml100k.frame.groupby("user_id").size().loc[dataset.user_ids].to_numpy()
    expected = np.floor(0.25 * totals + 0.5)
    # Each user sends round(25%) to test; only rows of items unseen in train are then dropped.
    assert np.all(test_counts <= expected)
    assert (expected - test_counts).sum() == dataset.stats["test_dropped_unknown_item"]
    share = test_counts / (train_counts + test_counts)
    assert np.all(np.abs(share - 0.25) < 0.05)
    assert np.all(train_counts >= 1)
    assert dataset.stats["input_interactions"] == 100_000
    assert (
        dataset.train.nnz + dataset.test.nnz + dataset.stats["test_dropped_unknown_item"] == 100_000
    )


def test_users_with_one_interaction_stay_in_train():
    interactions = make_interactions([("a", "x", 1, 1), ("b", "x", 2, 1), ("b", "y", 3, 2)])
    dataset = build_dataset(interactions, split=SplitConfig(test_ratio=0.5))
    assert dataset.user_index() == {"a": 0, "b": 1}
    assert per_user_counts(dataset.train).tolist() == [1, 1]


def test_no_test_pair_reaches_training(ml100k):
    dataset = build_dataset(ml100k, split=SplitConfig(validation_ratio=0.1))
    train, validation, test = (
        pairs(dataset, m) for m in (dataset.train, dataset.validation, dataset.test)
    )
    assert train and validation and test
    assert not (test & train) and not (test & validation) and not (train & validation)
    assert (
        len(train) + len(validation) + len(test) + dataset.stats["test_dropped_unknown_item"]
        == 100_000
    )
    # Every vocabulary entry has a training interaction.
    assert np.all(per_user_counts(dataset.train) > 0)
    assert np.all(np.bincount(dataset.train.indices, minlength=dataset.n_items) > 0)


def test_temporal_split_puts_each_users_latest_in_test():
    rows = [
        ("u1", "a", 1, 30),
        ("u1", "b", 2, 10),
        ("u1", "c", 3, 20),
        ("u2", "a", 4, 5),
        ("u2", "b", 5, 5),  # same time as the line before: the later line is "latest"
        ("u3", "c", 1, 1),  # a single interaction stays in train
    ]
    dataset = build_dataset(make_interactions(rows), split=SplitConfig(method="temporal"))
    assert pairs(dataset, dataset.test) == {("u1", "a"), ("u2", "b")}
    assert pairs(dataset, dataset.train) == {("u1", "b"), ("u1", "c"), ("u2", "a"), ("u3", "c")}


def test_temporal_split_on_ml100k_matches_max_timestamp(ml100k):
    dataset = build_dataset(ml100k, split=SplitConfig(method="temporal", leave_last_n=1))
    frame = ml100k.frame
    latest = frame.loc[frame.groupby("user_id")["timestamp"].idxmax()]
    test = pairs(dataset, dataset.test)
    assert len(test) == 943 - dataset.stats["test_dropped_unknown_item"]
    latest_times = dict(zip(latest["user_id"], latest["timestamp"], strict=True))
    times = frame.set_index(["user_id", "item_id"])["timestamp"]
    assert all(times[pair] == latest_times[pair[0]] for pair in test)


def test_temporal_split_needs_timestamps():
    interactions = make_interactions([("a", "x", 1, 0)], timestamps=False)
    with pytest.raises(DataError, match="'temporal' needs timestamps but mem has none"):
        build_dataset(interactions, split=SplitConfig(method="temporal"))


def test_file_split_uses_ua_base_and_ua_test(ml100k_dir):
    train = load_interactions(ml100k_dir / "ua.base")
    test = load_interactions(ml100k_dir / "ua.test")
    assert test.report.rows_kept == 9_430
    dataset = build_dataset(
        train, split=SplitConfig(method="file", validation_ratio=0.1), test_interactions=test
    )
    stats = dataset.stats
    assert stats["test_input_interactions"] == 9_430
    assert dataset.test.nnz + stats["test_dropped_unknown_item"] == 9_430
    assert stats["test_dropped_unknown_user"] == 0
    assert dataset.n_users == 943
    assert dataset.train.nnz + dataset.validation.nnz == 90_570
    assert not pairs(dataset, dataset.test) & (
        pairs(dataset, dataset.train) | pairs(dataset, dataset.validation)
    )
    with pytest.raises(DataError, match="no test data was given"):
        build_dataset(train, split=SplitConfig(method="file"))


def test_file_split_drops_unknown_and_already_seen_test_rows():
    train = make_interactions([("a", "x", 1, 1), ("a", "y", 2, 2), ("b", "x", 3, 3)])
    test = make_interactions(
        [("a", "x", 5, 9), ("b", "y", 4, 9), ("c", "x", 1, 9), ("b", "z", 1, 9)]
    )
    dataset = build_dataset(train, split=SplitConfig(method="file"), test_interactions=test)
    assert pairs(dataset, dataset.test) == {("b", "y")}
    assert dataset.stats["test_dropped_unknown_user"] == 1
    assert dataset.stats["test_dropped_unknown_item"] == 1
    assert dataset.stats["test_dropped_seen_in_training"] == 1


def test_min_count_filter_is_iterative():
    # Item z has one interaction; removing it leaves user c with one, which then goes too,
    # and with it item w (its only other user).
    rows = [("a", "x", 1, 1), ("a", "y", 1, 1), ("b", "x", 1, 1), ("b", "y", 1, 1)]
    rows += [("c", "z", 1, 1), ("c", "w", 1, 1), ("d", "w", 1, 1), ("d", "x", 1, 1)]
    dataset = build_dataset(
        make_interactions(rows),
        split=SplitConfig(test_ratio=0.0),
        preprocess=PreprocessConfig(min_user_interactions=2, min_item_interactions=2),
    )
    assert sorted(dataset.user_ids) == ["a", "b"]
    assert sorted(dataset.item_ids) == ["x", "y"]
    assert dataset.stats["filtered_by_min_counts"] == 4
    assert dataset.stats["users_removed_by_min_counts"] == 2
    assert dataset.stats["items_removed_by_min_counts"] == 2
    assert dataset.test is None


def test_implicit_feedback_matrices_hold_ones(tmp_path):
    path = tmp_path / "pairs.tsv"
    path.write_text("u1\ti1\nu1\ti2\nu2\ti1\nu2\ti3\n")
    dataset = build_dataset(load_interactions(path), split=SplitConfig(test_ratio=0.5))
    assert not dataset.has_ratings
    assert set(dataset.train.data) == {1.0} and set(dataset.test.data) == {1.0}


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match="split.method: Input should be 'random', 'temporal'"):
        SplitConfig.from_dict({"method": "sideways"})
    with pytest.raises(ConfigError, match=r"split.test_ratio: .* less than 1, got 1.5"):
        SplitConfig.from_dict({"test_ratio": 1.5})
    with pytest.raises(ConfigError, match="preprocess.min_user_interactions: .* got 0"):
        PreprocessConfig.from_dict({"min_user_interactions": 0})
    with pytest.raises(ValidationError):  # built directly: pydantic's own error
        SplitConfig(method="sideways")


def test_dataset_save_load_round_trip(ml100k, tmp_path):
    dataset = build_dataset(ml100k, split=SplitConfig(validation_ratio=0.1))
    dataset.save(tmp_path / "ds")
    loaded = Dataset.load(tmp_path / "ds")
    for part in ("train", "validation", "test"):
        original, restored = getattr(dataset, part), getattr(loaded, part)
        assert restored.shape == original.shape and restored.dtype == np.float32
        assert (restored != original).nnz == 0
    assert loaded.user_ids.tolist() == dataset.user_ids.tolist()
    assert loaded.item_ids.tolist() == dataset.item_ids.tolist()
    assert loaded.item_titles["1"] == "Toy Story (1995)"
    assert loaded.stats == dataset.stats
    assert loaded.item_index()["1"] == dataset.item_index()["1"]
    # Plain files only: every .npy loads without pickle.
    for path in (tmp_path / "ds").glob("*.npy"):
        np.load(path, allow_pickle=False)


def test_dataset_load_rejects_unknown_format_version(ml100k, tmp_path):
    build_dataset(ml100k).save(tmp_path / "ds")
    metadata_path = tmp_path / "ds" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    metadata["format_version"] = 99
    metadata_path.write_text(json.dumps(metadata))
    with pytest.raises(DataError, match="format_version 99 is not supported"):
        Dataset.load(tmp_path / "ds")
    with pytest.raises(DataError, match="not a saved dataset"):
        Dataset.load(tmp_path / "nothing-here")


def test_native_random_holdout_equals_the_argsort(monkeypatch):
    """The native rank-within-user (counting sort, then each user's keys) holds out exactly the
    rows the argsort of (user, random key) does, ties that straddle a cut-off included (then it
    defers to the argsort)."""
    from walsrec import native
    from walsrec.data import splits

    if native.kernels() is None:
        pytest.skip("no C++ compiler: the native kernels are unavailable")
    codes = np.random.default_rng(1).integers(0, 3000, 200_000)
    native_mask = splits.random_holdout(codes, 0.25, np.random.default_rng(7))
    with monkeypatch.context() as patch:
        patch.setattr(native, "kernels", lambda: None)
        numpy_mask = splits.random_holdout(codes, 0.25, np.random.default_rng(7))
    np.testing.assert_array_equal(native_mask, numpy_mask)
    # Keys from a tiny range: many ties, some within the cut-off block, some across it.
    keys = np.random.default_rng(2).integers(0, 4, 2000)
    small_codes = np.random.default_rng(3).integers(0, 50, 2000)
    assert splits._native_random_holdout(small_codes, keys, 0.25) is None
    # Ties on one side of every cut-off: the mask is the argsort's whatever their order.
    one_user = np.zeros(8, dtype=np.int64)
    keys = np.array([5, 5, 1, 2, 9, 9, 9, 3], dtype=np.int64)  # cut-off 2: ranks 0, 1 held
    mask = splits._native_random_holdout(one_user, keys, 0.25)
    np.testing.assert_array_equal(mask, keys <= 2)
