"""The trained recommender as one object, and its plain-file format.

A `RecommenderModel` bundles what serving and batch inference need: the WALS factors, an
optional sparse item-item matrix blended into the scores (walsrec.ensemble), the id
vocabularies, the interactions each user has already seen (so they can be excluded), item
popularity (the fallback for unknown users), item titles and the training metadata.

On disk it is a folder of plain files, never a pickle (a pickled model is code execution for
whoever can write the artifact store):

    metadata.json          format_version, WALS config, global mean, history, metrics, sizes,
                           SHA-256 checksums of the other files (version 3)
    user_factors.npy       float32 [n_users, n_factors]
    item_factors.npy       float32 [n_items, n_factors]
    user_bias.npy          float32 [n_users]   (only with biases)
    item_bias.npy          float32 [n_items]   (only with biases)
    item_popularity.npy    float64 [n_items]   interactions per item in training
    seen_indptr.npy, seen_indices.npy, seen_data.npy   CSR of the training interactions
    item_item_indptr.npy, item_item_indices.npy, item_item_data.npy
                           CSR float32 [n_items, n_items] (only for a blended model; version 2)
    user_ids.json, item_ids.json, item_titles.json

Format version 2 added the item-item files and `blend_weight` in metadata.json; version 3 adds
`checksums` to metadata.json, the SHA-256 of every other file, checked by `load` (a truncated,
edited or swapped file is refused, naming it). Version 1 and 2 folders still load, with a
warning that their files cannot be verified. `load` also validates what it read (finite
numbers, indices in range, unique ids that match the arrays' shapes: `RecommenderModel.validate`)
so a damaged model fails at load with a DataError naming the file, not later with wrong answers.

A blended model scores

    (1 - blend_weight) * (x_u . y_i + biases) + blend_weight * sum_{j in I_u} S[j, i]

with I_u the user's training items (`seen`): `blend_scores` is that formula, used by
`RecommenderModel.score_users`, `predict`, and the service (for known and folded-in users).
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec.errors import DataError

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
FIRST_CHECKSUMMED_VERSION = 3
FORMAT_NAME = "walsrec-model"

logger = logging.getLogger(__name__)


def score_rows(model: Any, users: np.ndarray) -> np.ndarray:
    """float32 [len(users), n_items]: global_mean + b_u + b_i + x_u . y_i for every item.

    The one scoring formula, shared by `RecommenderModel` and `walsrec.wals.WALSModel` (any
    object with user_factors, item_factors, user_bias, item_bias and global_mean; biases may be
    None). `users` are valid row indices.
    """
    scores = model.user_factors[users] @ model.item_factors.T
    if model.item_bias is not None:
        scores += model.item_bias[np.newaxis, :]
    if model.user_bias is not None:
        scores += model.user_bias[users, np.newaxis]
    if scores.dtype != np.float32:  # float64 factors: the sum in float64, then rounded
        return (scores + np.float32(model.global_mean)).astype(np.float32)
    scores += np.float32(model.global_mean)  # in place: no second block-sized array
    return scores


def predict_pairs(model: Any, users: np.ndarray, items: np.ndarray) -> np.ndarray:
    """float32 [n]: the `score_rows` formula for (user, item) index pairs of equal length."""
    predictions = np.einsum("ij,ij->i", model.user_factors[users], model.item_factors[items])
    if model.user_bias is not None:
        predictions += model.user_bias[users]
    if model.item_bias is not None:
        predictions += model.item_bias[items]
    return (predictions + np.float32(model.global_mean)).astype(np.float32, copy=False)


def binary_rows(matrix: sp.spmatrix) -> sp.csr_matrix:
    """float32 CSR with 1 for every stored non-zero entry: the users' item sets."""
    binary = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    binary.eliminate_zeros()
    binary.sum_duplicates()
    binary.data[:] = 1.0
    return binary


def blend_scores(
    wals_scores: np.ndarray, rows: sp.spmatrix, item_item: sp.spmatrix | None, weight: float
) -> np.ndarray:
    """The blend's formula: (1 - weight) * wals_scores + weight * (rows @ item_item).

    Args:
        wals_scores: float32 [n_rows, n_items], the WALS scores (biases included).
        rows: binary [n_rows, n_items], each row's item set (training items, or a new user's
            given items).
        item_item: CSR [n_items, n_items], or None: the WALS scores are returned unchanged (the
            same array), so an unblended model scores exactly as before blending existed.
        weight: the item-item share in [0, 1).

    Returns:
        float32 [n_rows, n_items].
    """
    if item_item is None:
        return wals_scores
    neighbourhood = (rows @ item_item).toarray()
    keep = np.float32(1.0 - weight)
    return (keep * wals_scores + np.float32(weight) * neighbourhood).astype(np.float32, copy=False)


@dataclass
class RecommenderModel:
    """A trained WALS recommender with its vocabularies.

    Attributes:
        user_factors: float32 [n_users, n_factors].
        item_factors: float32 [n_items, n_factors].
        user_bias: float32 [n_users] or None when trained without biases.
        item_bias: float32 [n_items] or None.
        global_mean: added to every prediction (0 without biases).
        user_ids: index -> original user id (str).
        item_ids: index -> original item id (str).
        seen: CSR [n_users, n_items] of the training interactions (excluded when recommending).
        item_popularity: interactions per item in training (the fallback ranking).
        item_titles: original item id -> title, where the data had metadata.
        config: the WALS configuration it was trained with.
        metadata: free JSON-able metadata: history, metrics, trained_at, dataset stats.
        item_item: float32 CSR [n_items, n_items] blended into the scores, or None (WALS
            alone).
        blend_weight: the item-item share w in [0, 1) of the scores (0 without item_item).
    """

    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray | None
    item_bias: np.ndarray | None
    global_mean: float
    user_ids: np.ndarray
    item_ids: np.ndarray
    seen: sp.csr_matrix
    item_popularity: np.ndarray
    item_titles: dict[str, str] = field(default_factory=dict)
    config: dict = field(default_factory=dict)
    metadata: dict = field(default_factory=dict)
    item_item: sp.csr_matrix | None = None
    blend_weight: float = 0.0
    # Derived from `seen` and `item_item` on first use: treat a model as immutable.
    _cache: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.item_item is None:
            if self.blend_weight:
                raise DataError("blend_weight > 0 needs an item_item matrix")
            return
        if not 0 <= self.blend_weight < 1:
            raise DataError(f"blend_weight must be in [0, 1), got {self.blend_weight!r}")
        n_items = self.item_factors.shape[0]
        if self.item_item.shape != (n_items, n_items):
            raise DataError(
                f"item_item is {self.item_item.shape[0]} x {self.item_item.shape[1]}, the model "
                f"has {n_items} items"
            )
        self.item_item = sp.csr_matrix(self.item_item, dtype=np.float32)
        self.blend_weight = float(self.blend_weight)

    @property
    def blended(self) -> bool:
        """Whether an item-item part is in the scores."""
        return self.item_item is not None

    def seen_rows(self) -> sp.csr_matrix:
        """Binary CSR of the training interactions: the item sets the item-item part reads."""
        if "seen_rows" not in self._cache:
            self._cache["seen_rows"] = binary_rows(self.seen)
        return self._cache["seen_rows"]

    @property
    def n_users(self) -> int:
        return int(self.user_factors.shape[0])

    @property
    def n_items(self) -> int:
        return int(self.item_factors.shape[0])

    @property
    def n_factors(self) -> int:
        return int(self.user_factors.shape[1])

    def user_index(self) -> dict[str, int]:
        """Original user id -> row index."""
        return {str(user): index for index, user in enumerate(self.user_ids)}

    def item_index(self) -> dict[str, int]:
        """Original item id -> column index."""
        return {str(item): index for index, item in enumerate(self.item_ids)}

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Dense scores [len(users), n_items] for ranking: x_u . y_i (+ biases), blended with
        the item-item part (`blend_scores`) when the model has one."""
        users = np.asarray(users, dtype=np.int64)
        wals = score_rows(self, users)
        if self.item_item is None:
            return wals
        return blend_scores(wals, self.seen_rows()[users], self.item_item, self.blend_weight)

    def predict(self, users: np.ndarray, items: np.ndarray) -> np.ndarray:
        """Predictions for (user, item) index pairs: global mean + biases + x_u . y_i, blended
        like `score_users` when the model has an item-item part."""
        users = np.asarray(users, dtype=np.int64)
        items = np.asarray(items, dtype=np.int64)
        wals = predict_pairs(self, users, items)
        if self.item_item is None:
            return wals
        if "item_item_by_target" not in self._cache:
            self._cache["item_item_by_target"] = self.item_item.T.tocsr()
        # sum_{j in I_u} S[j, i]: the user's item set against column i of S, pair by pair.
        columns = self._cache["item_item_by_target"][items]
        neighbourhood = np.asarray(self.seen_rows()[users].multiply(columns).sum(axis=1))
        keep = np.float32(1.0 - self.blend_weight)
        blended = keep * wals + np.float32(self.blend_weight) * neighbourhood.ravel()
        return blended.astype(np.float32, copy=False)

    def save(self, directory: str | Path) -> None:
        """Write the model as plain files into `directory` (created if needed)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        arrays = {
            "user_factors": np.ascontiguousarray(self.user_factors, dtype=np.float32),
            "item_factors": np.ascontiguousarray(self.item_factors, dtype=np.float32),
            "item_popularity": np.asarray(self.item_popularity, dtype=np.float64),
            "seen_indptr": self.seen.indptr.astype(np.int64),
            "seen_indices": self.seen.indices.astype(np.int32),
            "seen_data": self.seen.data.astype(np.float32),
        }
        if self.user_bias is not None:
            arrays["user_bias"] = np.asarray(self.user_bias, dtype=np.float32)
        if self.item_bias is not None:
            arrays["item_bias"] = np.asarray(self.item_bias, dtype=np.float32)
        if self.item_item is not None:
            arrays["item_item_indptr"] = self.item_item.indptr.astype(np.int64)
            arrays["item_item_indices"] = self.item_item.indices.astype(np.int32)
            arrays["item_item_data"] = self.item_item.data.astype(np.float32)
        written = []
        for name, array in arrays.items():
            np.save(directory / f"{name}.npy", array, allow_pickle=False)
            written.append(f"{name}.npy")
        _write_json(directory / "user_ids.json", [str(u) for u in self.user_ids])
        _write_json(directory / "item_ids.json", [str(i) for i in self.item_ids])
        _write_json(directory / "item_titles.json", self.item_titles)
        written += ["user_ids.json", "item_ids.json", "item_titles.json"]
        _write_json(
            directory / "metadata.json",
            {
                "format": FORMAT_NAME,
                "format_version": FORMAT_VERSION,
                "n_users": self.n_users,
                "n_items": self.n_items,
                "n_factors": self.n_factors,
                "global_mean": float(self.global_mean),
                "has_biases": self.user_bias is not None,
                "has_item_item": self.item_item is not None,
                "blend_weight": float(self.blend_weight),
                "config": self.config,
                "metadata": self.metadata,
                "checksums": {name: file_sha256(directory / name) for name in written},
            },
        )

    @classmethod
    def load(cls, directory: str | Path) -> RecommenderModel:
        """Read a model written by `save`, verify and validate it; a DataError naming the file
        for anything else (a missing, truncated, edited or inconsistent file)."""
        directory = Path(directory)
        meta_path = directory / "metadata.json"
        if not meta_path.is_file():
            raise DataError(f"{directory} is not a walsrec model: metadata.json is missing")
        meta = _read_json(meta_path)
        if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
            format_name = meta.get("format") if isinstance(meta, dict) else None
            raise DataError(f"{meta_path}: not a walsrec model (format {format_name!r})")
        version = meta.get("format_version")
        if version not in READABLE_VERSIONS:
            raise DataError(
                f"{meta_path}: model format version {version} is not "
                f"supported by this walsrec (reads versions "
                f"{', '.join(map(str, READABLE_VERSIONS))}); retrain the model"
            )
        checksums = meta.get("checksums")
        if version >= FIRST_CHECKSUMMED_VERSION:
            if not isinstance(checksums, dict):
                raise DataError(f"{meta_path}: the checksums of the model's files are missing")
        else:
            checksums = None
            logger.warning(
                "%s: model format version %s records no checksums, so its files are not "
                "verified; save the model again to add them",
                directory,
                version,
            )

        def verified(name: str) -> Path:
            path = directory / name
            if not path.is_file():
                raise DataError(f"{path}: missing from the model folder")
            if checksums is not None:
                if name not in checksums:
                    raise DataError(f"{path}: has no checksum in metadata.json")
                if file_sha256(path) != checksums[name]:
                    raise DataError(
                        f"{path}: SHA-256 does not match metadata.json (the file was changed, "
                        "truncated or swapped since the model was saved)"
                    )
            return path

        def array(name: str) -> np.ndarray:
            path = verified(f"{name}.npy")
            try:
                return np.load(path, allow_pickle=False)
            except (OSError, ValueError, EOFError) as exc:
                raise DataError(f"{path}: not a readable .npy array ({exc})") from exc

        def optional(name: str) -> np.ndarray | None:
            return array(name) if (directory / f"{name}.npy").is_file() else None

        def json_file(name: str) -> Any:
            return _read_json(verified(name))

        user_ids = _id_array(json_file("user_ids.json"), directory / "user_ids.json")
        item_ids = _id_array(json_file("item_ids.json"), directory / "item_ids.json")
        seen = _csr(directory, "seen", array, (len(user_ids), len(item_ids)))
        item_item = None
        if meta.get("has_item_item"):
            item_item = _csr(directory, "item_item", array, (len(item_ids), len(item_ids)))
        titles = json_file("item_titles.json")
        if not isinstance(titles, dict):
            raise DataError(f"{directory / 'item_titles.json'}: expected an object of titles")
        try:
            model = cls(
                user_factors=array("user_factors"),
                item_factors=array("item_factors"),
                user_bias=optional("user_bias"),
                item_bias=optional("item_bias"),
                global_mean=float(meta["global_mean"]),
                user_ids=user_ids,
                item_ids=item_ids,
                seen=seen,
                item_popularity=array("item_popularity"),
                item_titles=titles,
                config=meta.get("config", {}),
                metadata=meta.get("metadata", {}),
                item_item=item_item,
                blend_weight=float(meta.get("blend_weight", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"{meta_path}: invalid model metadata ({exc})") from exc
        model.validate(directory)
        if model.user_factors.shape != (meta.get("n_users"), meta.get("n_factors")) or (
            model.item_factors.shape != (meta.get("n_items"), meta.get("n_factors"))
        ):
            raise DataError(f"{meta_path}: factor shapes do not match metadata.json")
        return model

    def validate(self, directory: str | Path = "model") -> None:
        """Raise a DataError naming the file (in `directory`) of the first inconsistency: factor
        shapes, ids (unique, one per row), biases and popularity (one per row), non-finite
        numbers, interaction and item-item indices out of range."""
        directory = Path(directory)
        for name in ("user_factors", "item_factors"):
            factors = getattr(self, name)
            if factors.ndim != 2 or not np.issubdtype(factors.dtype, np.floating):
                raise DataError(f"{directory / name}.npy: expected a 2-D float array")
        if self.user_factors.shape[1] != self.item_factors.shape[1]:
            raise DataError(
                f"{directory / 'item_factors.npy'}: {self.item_factors.shape[1]} factors, the "
                f"user factors have {self.user_factors.shape[1]}"
            )
        for kind, ids, rows in (
            ("user", self.user_ids, self.n_users),
            ("item", self.item_ids, self.n_items),
        ):
            path = directory / f"{kind}_ids.json"
            if len(ids) != rows:
                raise DataError(f"{path}: {len(ids)} ids for {rows} rows of {kind} factors")
            if len(set(ids)) != len(ids):
                raise DataError(f"{path}: the ids are not unique")
        for name, values, size in (
            ("user_bias", self.user_bias, self.n_users),
            ("item_bias", self.item_bias, self.n_items),
            ("item_popularity", self.item_popularity, self.n_items),
        ):
            if values is not None and np.shape(values) != (size,):
                raise DataError(f"{directory / name}.npy: shape {np.shape(values)}, not ({size},)")
        numbers = {
            "user_factors": self.user_factors,
            "item_factors": self.item_factors,
            "user_bias": self.user_bias,
            "item_bias": self.item_bias,
            "item_popularity": self.item_popularity,
            "seen_data": self.seen.data,
            "item_item_data": None if self.item_item is None else self.item_item.data,
        }
        for name, values in numbers.items():
            if values is not None and not np.all(np.isfinite(values)):
                raise DataError(f"{directory / name}.npy: holds NaN or infinite values")
        if not np.isfinite(self.global_mean):
            raise DataError(f"{directory / 'metadata.json'}: global_mean is not finite")


def _write_json(path: Path, value: object) -> None:
    path.write_text(json.dumps(value, ensure_ascii=False, indent=1), encoding="utf-8")


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: not readable JSON ({exc})") from exc


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _id_array(ids: Any, path: Path) -> np.ndarray:
    if not isinstance(ids, list) or not all(isinstance(value, str) for value in ids):
        raise DataError(f"{path}: expected a JSON list of string ids")
    return np.array(ids, dtype=object)


def _csr(directory: Path, name: str, array: Any, shape: tuple[int, int]) -> sp.csr_matrix:
    """A CSR matrix from its three .npy files, its structure checked against `shape`."""
    data, indices, indptr = array(f"{name}_data"), array(f"{name}_indices"), array(f"{name}_indptr")
    rows, columns = shape
    problem = None
    if indptr.ndim != 1 or indptr.size != rows + 1 or not np.issubdtype(indptr.dtype, np.integer):
        problem = f"{name}_indptr.npy: expected {rows + 1} integer offsets"
    elif indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != indices.size:
        problem = f"{name}_indptr.npy: offsets are not a valid CSR index"
    elif indices.ndim != 1 or not np.issubdtype(indices.dtype, np.integer):
        problem = f"{name}_indices.npy: expected 1-D integer indices"
    elif indices.size and (indices.min() < 0 or indices.max() >= columns):
        problem = f"{name}_indices.npy: an index is outside [0, {columns})"
    elif data.shape != indices.shape:
        problem = f"{name}_data.npy: {data.size} values for {indices.size} indices"
    if problem is not None:
        raise DataError(f"{directory / problem}")
    return sp.csr_matrix((data, indices, indptr), shape=shape)
