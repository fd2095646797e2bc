"""The model-ready dataset: id vocabularies and sparse train / validation / test matrices.

Vocabularies come from the training part only, and every user and item in them has at least one
training interaction (validation rows whose item never appears in train are moved back to train).
Test rows outside the vocabulary, or whose (user, item) pair is already in train or validation,
are dropped and counted in ``stats``, so test data never reaches training.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from walsrec.data.readers import Interactions
from walsrec.data.splits import (
    PreprocessConfig,
    SplitConfig,
    k_core_mask,
    random_holdout,
    temporal_holdout,
)
from walsrec.errors import ConfigError, DataError
from walsrec.lazy import LazyModule

pd = LazyModule("pandas")

FORMAT_VERSION = 1
_PARTS = ("train", "validation", "test")
_CSR_ARRAYS = ("indptr", "indices", "data")


@dataclass
class Dataset:
    """Id vocabularies and float32 rating matrices of shape [n_users, n_items].

    Attributes:
        user_ids: Row index -> original user id (str).
        item_ids: Column index -> original item id (str).
        train: Training ratings (1.0 for implicit feedback).
        validation: Validation ratings, disjoint from train and test; None when not split.
        test: Test ratings; None when not split.
        has_ratings: False for implicit feedback.
        item_titles: item_id -> title (may be empty).
        stats: Counts of interactions per part, users, items and every filtered or dropped row.
    """

    user_ids: np.ndarray
    item_ids: np.ndarray
    train: sp.csr_matrix
    validation: sp.csr_matrix | None
    test: sp.csr_matrix | None
    has_ratings: bool
    item_titles: dict[str, str] = field(default_factory=dict)
    stats: dict = field(default_factory=dict)
    # ((test, user_ids, item_ids), their fingerprint): recomputed when any of them is replaced.
    _fingerprint: tuple = field(default=((None,) * 3, None), init=False, repr=False, compare=False)

    @property
    def n_users(self) -> int:
        """Number of users (rows)."""
        return len(self.user_ids)

    @property
    def n_items(self) -> int:
        """Number of items (columns)."""
        return len(self.item_ids)

    def user_index(self) -> dict[str, int]:
        """Returns user id -> row index."""
        return {user_id: index for index, user_id in enumerate(self.user_ids.tolist())}

    def item_index(self) -> dict[str, int]:
        """Returns item id -> column index."""
        return {item_id: index for index, item_id in enumerate(self.item_ids.tolist())}

    def test_fingerprint(self) -> str:
        """A hash of the test pairs in original ids ("" without a test part): metrics are
        comparable only between runs with the same fingerprint (`walsrec.data.fingerprint`).

        Computed once per test matrix; a loaded dataset reads the one its save stored.
        """
        inputs, fingerprint = self._fingerprint
        current = self._fingerprint_inputs()
        if fingerprint is None or any(a is not b for a, b in zip(inputs, current, strict=True)):
            from walsrec.data.fingerprint import test_fingerprint

            fingerprint = test_fingerprint(self)
            self._fingerprint = (current, fingerprint)
        return fingerprint

    def _fingerprint_inputs(self) -> tuple:
        """What the fingerprint is computed from: the test pairs and the two vocabularies."""
        return (self.test, self.user_ids, self.item_ids)

    def save(self, directory: Path) -> None:
        """Writes the dataset as plain files: .npy arrays (no pickle) and JSON.

        ``metadata.json`` is written last, so a folder without it is an incomplete save.
        """
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "metadata.json").unlink(missing_ok=True)
        parts = []
        for part in _PARTS:
            matrix = getattr(self, part)
            if matrix is None:
                continue
            parts.append(part)
            matrix = sp.csr_matrix(matrix)
            np.save(directory / f"{part}_indptr.npy", matrix.indptr.astype(np.int64), False)
            np.save(directory / f"{part}_indices.npy", matrix.indices.astype(np.int32), False)
            np.save(directory / f"{part}_data.npy", matrix.data.astype(np.float32), False)
        _write_json(directory / "user_ids.json", [str(value) for value in self.user_ids])
        _write_json(directory / "item_ids.json", [str(value) for value in self.item_ids])
        _write_json(directory / "item_titles.json", self.item_titles)
        _write_json(directory / "stats.json", _jsonable(self.stats))
        metadata = {
            "format_version": FORMAT_VERSION,
            "n_users": self.n_users,
            "n_items": self.n_items,
            "has_ratings": bool(self.has_ratings),
            "parts": parts,
            "test_fingerprint": self.test_fingerprint(),
        }
        _write_json(directory / "metadata.json", metadata)

    @classmethod
    def load(cls, directory: Path) -> Dataset:
        """Reads a dataset written by :meth:`save`.

        Raises:
            DataError: When the folder is not a complete saved dataset or has an unknown
                format_version.
        """
        directory = Path(directory)
        metadata = _read_json(directory / "metadata.json", "not a saved dataset (or incomplete)")
        version = metadata.get("format_version")
        if version != FORMAT_VERSION:
            raise DataError(
                f"{directory / 'metadata.json'}: dataset format_version {version!r} is not "
                f"supported (this walsrec reads version {FORMAT_VERSION}); rebuild the dataset"
            )
        user_ids = np.array(_read_json(directory / "user_ids.json", "missing user ids"), object)
        item_ids = np.array(_read_json(directory / "item_ids.json", "missing item ids"), object)
        shape = (len(user_ids), len(item_ids))
        if shape != (metadata.get("n_users"), metadata.get("n_items")):
            raise DataError(
                f"{directory}: user_ids.json/item_ids.json hold {shape} ids but metadata.json "
                f"says ({metadata.get('n_users')}, {metadata.get('n_items')})"
            )
        matrices = {part: None for part in _PARTS}
        for part in metadata.get("parts", []):
            matrices[part] = _load_csr(directory, part, shape)
        if matrices["train"] is None:
            raise DataError(f"{directory}: metadata.json lists no train matrix")
        dataset = cls(
            user_ids=user_ids,
            item_ids=item_ids,
            train=matrices["train"],
            validation=matrices["validation"],
            test=matrices["test"],
            has_ratings=bool(metadata.get("has_ratings", True)),
            item_titles=_read_json(directory / "item_titles.json", "missing item titles"),
            stats=_read_json(directory / "stats.json", "missing stats"),
        )
        stored = metadata.get("test_fingerprint")  # absent from older saves: computed on use
        if isinstance(stored, str):
            dataset._fingerprint = (dataset._fingerprint_inputs(), stored)
        return dataset


def _jsonable(value):
    """Converts numpy scalars inside dicts/lists to plain Python for json."""
    if isinstance(value, dict):
        return {str(key): _jsonable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _write_json(path: Path, value) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")


def _read_json(path: Path, problem: str):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise DataError(f"{path}: file not found ({problem})") from exc
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read ({exc})") from exc


def _load_csr(directory: Path, part: str, shape: tuple[int, int]) -> sp.csr_matrix:
    arrays = {}
    for name in _CSR_ARRAYS:
        path = directory / f"{part}_{name}.npy"
        try:
            arrays[name] = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: cannot read the {part} matrix ({exc})") from exc
    if len(arrays["indptr"]) != shape[0] + 1 or len(arrays["indices"]) != len(arrays["data"]):
        raise DataError(f"{directory}: the {part} matrix arrays do not match shape {shape}")
    return sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)


def _present(codes: np.ndarray, n_codes: int) -> np.ndarray:
    """Boolean mask of which codes in [0, n_codes) occur (bincount beats np.unique by far)."""
    return np.bincount(codes, minlength=n_codes) > 0


def _vocabulary_order(ids: np.ndarray) -> np.ndarray:
    """Returns the order that sorts ids: numerically when all are integers, else as text."""
    as_text = pd.Series(ids, dtype="str")
    if len(as_text) and as_text.str.fullmatch(r"\d{1,18}").all():
        return np.argsort(as_text.astype(np.int64).to_numpy(), kind="stable")
    return np.argsort(as_text.to_numpy(dtype=object), kind="stable")


def _csr(rows: np.ndarray, cols: np.ndarray, values: np.ndarray, shape) -> sp.csr_matrix:
    matrix = sp.csr_matrix(
        (values.astype(np.float32), (rows.astype(np.int64), cols.astype(np.int64))), shape=shape
    )
    matrix.sort_indices()
    return matrix


def build_dataset(
    interactions: Interactions,
    *,
    split: SplitConfig = SplitConfig(),
    preprocess: PreprocessConfig = PreprocessConfig(),
    test_interactions: Interactions | None = None,
) -> Dataset:
    """Filters, splits and indexes interactions into a :class:`Dataset`.

    Steps: the minimum-count filter (k-core) on the training input; the test split (random per
    user, temporal leave-last-n, or the given test file); the validation split carved from the
    training part; vocabularies from the training part; test rows outside the vocabulary or
    already seen in training are dropped and counted.

    Args:
        interactions: The (training) interactions.
        split: How to split.
        preprocess: Minimum interaction counts per user and item.
        test_interactions: The test set, required for ``split.method == "file"`` only.

    Returns:
        The dataset; ``stats`` counts every filtered or dropped row.

    Raises:
        DataError: Temporal split without timestamps; file split without test data; nothing left
            after filtering.
        ConfigError: Test data given for a method other than "file".
    """
    source = interactions.source or "the interactions"
    if split.method == "file" and test_interactions is None:
        raise DataError(
            "split.method is 'file' but no test data was given; set the test file "
            "(data.test_path) or use split.method: random"
        )
    if split.method != "file" and test_interactions is not None:
        raise ConfigError(
            f"split.method: a test file was given but the method is {split.method!r}; "
            f"set split.method: file to use it"
        )
    if split.method == "temporal" and not interactions.has_timestamps:
        raise DataError(
            f"split.method 'temporal' needs timestamps but {source} has none; add a timestamp "
            f"column (columns.timestamp) or use split.method: random"
        )

    frame = interactions.frame
    user_codes, user_uniques = pd.factorize(frame["user_id"])
    item_codes, item_uniques = pd.factorize(frame["item_id"])
    ratings = frame["rating"].to_numpy(dtype=np.float32)
    stats: dict = {"split_method": split.method, "input_interactions": len(frame)}
    if interactions.feedback == "events":
        # The values are summed event weights: the data profile can't tell that from them.
        stats["feedback_kind"] = "events"

    kept, rounds = k_core_mask(
        user_codes, item_codes, preprocess.min_user_interactions, preprocess.min_item_interactions
    )
    stats["filtered_by_min_counts"] = int(len(frame) - kept.sum())
    stats["users_removed_by_min_counts"] = int(
        len(user_uniques) - np.count_nonzero(_present(user_codes[kept], len(user_uniques)))
    )
    stats["items_removed_by_min_counts"] = int(
        len(item_uniques) - np.count_nonzero(_present(item_codes[kept], len(item_uniques)))
    )
    stats["min_count_rounds"] = rounds
    if not kept.any():
        raise DataError(
            f"{source}: no interactions left after the minimum-count filter "
            f"(preprocess.min_user_interactions={preprocess.min_user_interactions}, "
            f"preprocess.min_item_interactions={preprocess.min_item_interactions})"
        )

    rows = np.flatnonzero(kept)
    rng_test, rng_validation = (np.random.default_rng([split.seed, stream]) for stream in (0, 1))
    test_mask = np.zeros(len(rows), dtype=bool)
    if split.method == "random":
        test_mask = random_holdout(user_codes[rows], split.test_ratio, rng_test)
    elif split.method == "temporal":
        timestamps = frame["timestamp"].to_numpy()
        test_mask = temporal_holdout(user_codes[rows], timestamps[rows], split.leave_last_n)
    test_rows, train_rows = rows[test_mask], rows[~test_mask]

    validation_rows = np.zeros(0, dtype=np.int64)
    if split.validation_ratio > 0:
        if split.method == "temporal":
            held = temporal_holdout(
                user_codes[train_rows], timestamps[train_rows], split.leave_last_n
            )
        else:
            held = random_holdout(user_codes[train_rows], split.validation_ratio, rng_validation)
        validation_rows, train_rows = train_rows[held], train_rows[~held]
        # An item seen only in validation would have no training signal: keep it in train.
        items_in_train = np.zeros(len(item_uniques), dtype=bool)
        items_in_train[item_codes[train_rows]] = True
        unseen = ~items_in_train[item_codes[validation_rows]]
        stats["validation_moved_to_train"] = int(unseen.sum())
        train_rows = np.sort(np.concatenate([train_rows, validation_rows[unseen]]))
        validation_rows = validation_rows[~unseen]

    # Vocabulary: users and items of the training part, sorted (numerically for integer ids).
    used_users = np.flatnonzero(_present(user_codes[train_rows], len(user_uniques)))
    used_items = np.flatnonzero(_present(item_codes[train_rows], len(item_uniques)))
    used_users = used_users[_vocabulary_order(user_uniques[used_users])]
    used_items = used_items[_vocabulary_order(item_uniques[used_items])]
    user_index_of_code = np.full(len(user_uniques), -1, dtype=np.int64)
    user_index_of_code[used_users] = np.arange(len(used_users))
    item_index_of_code = np.full(len(item_uniques), -1, dtype=np.int64)
    item_index_of_code[used_items] = np.arange(len(used_items))
    user_ids = np.asarray(user_uniques[used_users], dtype=object)
    item_ids = np.asarray(item_uniques[used_items], dtype=object)
    shape = (len(user_ids), len(item_ids))

    def part_matrix(part_rows: np.ndarray) -> sp.csr_matrix:
        return _csr(
            user_index_of_code[user_codes[part_rows]],
            item_index_of_code[item_codes[part_rows]],
            ratings[part_rows],
            shape,
        )

    train = part_matrix(train_rows)
    validation = part_matrix(validation_rows) if split.validation_ratio > 0 else None

    if split.method == "file":
        test_frame = test_interactions.frame
        test_users = pd.Index(user_ids).get_indexer(test_frame["user_id"].to_numpy(dtype=object))
        test_items = pd.Index(item_ids).get_indexer(test_frame["item_id"].to_numpy(dtype=object))
        test_ratings = test_frame["rating"].to_numpy(dtype=np.float32)
        stats["test_input_interactions"] = len(test_frame)
    else:
        test_users = user_index_of_code[user_codes[test_rows]]
        test_items = item_index_of_code[item_codes[test_rows]]
        test_ratings = ratings[test_rows]
    unknown_user = test_users < 0
    unknown_item = ~unknown_user & (test_items < 0)
    known = ~unknown_user & ~unknown_item
    # Pairs already in train or validation would leak into (and be excluded from) evaluation.
    if len(validation_rows):
        training_rows = np.concatenate([train_rows, validation_rows])
        training_keys = np.sort(
            user_index_of_code[user_codes[training_rows]] * shape[1]
            + item_index_of_code[item_codes[training_rows]]
        )
    else:
        # The canonical train CSR lists its keys in order already: no sort of 15M keys.
        training_keys = (
            np.repeat(np.arange(shape[0], dtype=np.int64), np.diff(train.indptr)) * shape[1]
            + train.indices
        )
    test_keys = test_users[known] * shape[1] + test_items[known]
    positions = np.minimum(np.searchsorted(training_keys, test_keys), len(training_keys) - 1)
    already_seen = np.zeros(len(test_users), dtype=bool)
    already_seen[known] = training_keys[positions] == test_keys
    keep_test = known & ~already_seen
    stats["test_dropped_unknown_user"] = int(unknown_user.sum())
    stats["test_dropped_unknown_item"] = int(unknown_item.sum())
    stats["test_dropped_seen_in_training"] = int(already_seen.sum())
    has_test = split.method == "file" or split.test_ratio > 0 or split.method == "temporal"
    test = (
        _csr(test_users[keep_test], test_items[keep_test], test_ratings[keep_test], shape)
        if has_test
        else None
    )

    stats.update(
        users=shape[0],
        items=shape[1],
        train_interactions=int(train.nnz),
        validation_interactions=int(validation.nnz) if validation is not None else 0,
        test_interactions=int(test.nnz) if test is not None else 0,
        train_density=float(train.nnz / max(shape[0] * shape[1], 1)),
    )
    return Dataset(
        user_ids=user_ids,
        item_ids=item_ids,
        train=train,
        validation=validation,
        test=test,
        has_ratings=interactions.has_ratings,
        item_titles=dict(interactions.item_titles),
        stats=stats,
    )
