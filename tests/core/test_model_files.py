"""The model folder: checksums recorded at save and checked at load, and what load validates."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.errors import DataError
from walsrec.models.recommender import FORMAT_VERSION, RecommenderModel, file_sha256


def _model(n_users: int = 6, n_items: int = 5) -> RecommenderModel:
    rng = np.random.default_rng(3)
    seen = sp.csr_matrix(rng.random((n_users, n_items)) > 0.5, dtype=np.float32)
    return RecommenderModel(
        user_factors=rng.normal(size=(n_users, 3)).astype(np.float32),
        item_factors=rng.normal(size=(n_items, 3)).astype(np.float32),
        user_bias=rng.normal(size=n_users).astype(np.float32),
        item_bias=rng.normal(size=n_items).astype(np.float32),
        global_mean=3.5,
        user_ids=np.array([f"u{i}" for i in range(n_users)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(n_items)], dtype=object),
        seen=seen,
        item_popularity=np.asarray(seen.sum(axis=0)).ravel().astype(np.float64),
        item_titles={"i0": "Zero"},
    )


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    _model().save(tmp_path / "model")
    return tmp_path / "model"


def _rewrite(folder: Path, name: str, write) -> None:
    """Change a file and record its new checksum, as a consistent but bad model would."""
    write(folder / name)
    meta = json.loads((folder / "metadata.json").read_text())
    meta["checksums"][name] = file_sha256(folder / name)
    (folder / "metadata.json").write_text(json.dumps(meta))


def test_save_records_a_sha256_per_file_and_load_round_trips(saved: Path) -> None:
    meta = json.loads((saved / "metadata.json").read_text())
    assert meta["format_version"] == FORMAT_VERSION == 3
    files = {path.name for path in saved.iterdir()} - {"metadata.json"}
    assert set(meta["checksums"]) == files
    assert meta["checksums"]["user_ids.json"] == file_sha256(saved / "user_ids.json")
    loaded = RecommenderModel.load(saved)
    np.testing.assert_array_equal(loaded.user_factors, _model().user_factors)


def test_a_truncated_file_is_refused_naming_it(saved: Path) -> None:
    path = saved / "item_factors.npy"
    path.write_bytes(path.read_bytes()[:-7])
    with pytest.raises(DataError, match=r"item_factors\.npy: SHA-256 does not match"):
        RecommenderModel.load(saved)


def test_swapped_ids_are_refused(saved: Path) -> None:
    ids = json.loads((saved / "user_ids.json").read_text())
    ids[0], ids[1] = ids[1], ids[0]
    (saved / "user_ids.json").write_text(json.dumps(ids))
    with pytest.raises(DataError, match=r"user_ids\.json: SHA-256"):
        RecommenderModel.load(saved)


def test_broken_json_is_refused_naming_the_file(saved: Path) -> None:
    (saved / "metadata.json").write_text('{"format": "walsrec-model", ')
    with pytest.raises(DataError, match=r"metadata\.json: not readable JSON"):
        RecommenderModel.load(saved)


def test_a_nan_factor_is_refused_even_with_a_matching_checksum(saved: Path) -> None:
    factors = _model().user_factors.copy()
    factors[2, 1] = np.nan
    _rewrite(saved, "user_factors.npy", lambda p: np.save(p, factors, allow_pickle=False))
    with pytest.raises(DataError, match=r"user_factors\.npy: holds NaN or infinite"):
        RecommenderModel.load(saved)


def test_duplicate_ids_are_refused(saved: Path) -> None:
    ids = [f"i{i}" for i in range(5)]
    ids[4] = "i0"
    _rewrite(saved, "item_ids.json", lambda p: p.write_text(json.dumps(ids)))
    with pytest.raises(DataError, match=r"item_ids\.json: the ids are not unique"):
        RecommenderModel.load(saved)


def test_ids_must_match_the_factor_rows(saved: Path) -> None:
    ids = [f"u{i}" for i in range(7)]
    _rewrite(saved, "user_ids.json", lambda p: p.write_text(json.dumps(ids)))
    with pytest.raises(DataError, match=r"seen_indptr\.npy|user_ids\.json"):
        RecommenderModel.load(saved)


def test_out_of_range_interaction_indices_are_refused(saved: Path) -> None:
    indices = np.load(saved / "seen_indices.npy")
    indices[0] = 99
    _rewrite(saved, "seen_indices.npy", lambda p: np.save(p, indices, allow_pickle=False))
    with pytest.raises(DataError, match=r"seen_indices\.npy: an index is outside \[0, 5\)"):
        RecommenderModel.load(saved)


def test_a_version_2_folder_loads_without_checksums_and_says_so(saved: Path, caplog) -> None:
    meta = json.loads((saved / "metadata.json").read_text())
    meta["format_version"] = 2
    del meta["checksums"]
    (saved / "metadata.json").write_text(json.dumps(meta))
    with caplog.at_level(logging.WARNING, logger="walsrec.models.recommender"):
        RecommenderModel.load(saved)
    assert "records no checksums" in caplog.text


def test_a_version_3_folder_without_checksums_is_refused(saved: Path) -> None:
    meta = json.loads((saved / "metadata.json").read_text())
    del meta["checksums"]
    (saved / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="checksums of the model's files are missing"):
        RecommenderModel.load(saved)
