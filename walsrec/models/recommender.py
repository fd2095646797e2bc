"""The trained recommender as one object, its library API, and its plain-file format.

A `RecommenderModel` bundles what serving and batch inference need: the WALS factors, an
optional sparse item-item matrix blended into the scores (walsrec.models.ensemble), the id
vocabularies, the interactions each user has already seen (so they can be excluded), item
popularity (the fallback for unknown users), item titles and the training metadata.

It is also the class a Python user calls, with implicit's batch-first API (docs/library.md):
`recommend`, `rank`, `similar_items`, `similar_users`, `explain`, `partial_fit_users`,
`partial_fit_items`, `fit` (the only method that imports TensorFlow), `unfitted`, and
`save` / `load` to a folder or to one zip archive (".zip", ".npz" or a binary file object)
holding exactly the folder's files.

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
import re
import tempfile
import zipfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, NamedTuple

import numpy as np
import scipy.sparse as sp

from walsrec.errors import DataError
from walsrec.inference.topk import PAD_ITEM, chunk_size_for, top_k
from walsrec.lazy import LazyModule
from walsrec.models.fold_in import FoldIn
from walsrec.models.popularity import PopularityModel
from walsrec.models.wals_config import WALSConfig

# scipy.linalg on first use: 0.15 s of import that a run served from the cache never needs.
linalg = LazyModule("scipy.linalg")

FORMAT_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)
FIRST_CHECKSUMMED_VERSION = 3
FORMAT_NAME = "walsrec-model"

logger = logging.getLogger(__name__)


def score_rows(model: Any, users: np.ndarray) -> np.ndarray:
    """float32 [len(users), n_items]: global_mean + b_u + b_i + x_u . y_i for every item.

    The one scoring formula, shared by `RecommenderModel` and `walsrec.models.wals.WALSModel` (any
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
    if model.global_mean != 0:  # implicit models have none: skip a pass over the block
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

    def score_folded(
        self, factors: np.ndarray, biases: np.ndarray | None, rows: sp.spmatrix | None
    ) -> np.ndarray:
        """Scores [n, n_items] of users not stored in the model (folded in): the `score_rows`
        formula with their factors and biases, blended with their item sets (`rows`, read only
        by a blended model) as `score_users` blends a known user's training items."""
        folded = _Factors(
            factors,
            self.item_factors,
            None if self.user_bias is None else biases,
            self.item_bias,
            self.global_mean,
        )
        scores = score_rows(folded, np.arange(factors.shape[0]))
        if self.item_item is None:
            return scores
        return blend_scores(scores, binary_rows(rows), self.item_item, self.blend_weight)

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

    # ------------------------------------------------------------------ the library API
    #
    # Users, items and candidates are named by their ids (the model's vocabularies,
    # `user_ids` / `item_ids`, strings): any other value is converted with str(), so for a
    # model fitted on a bare matrix, whose ids are "0", "1", ..., the integer 3 names row 3.
    # Positions appear in one place only: the columns of a sparse `user_items` (`item_users`)
    # argument are the model's item (user) positions, as in the training matrix.

    @classmethod
    def unfitted(cls, config: Mapping[str, Any] | None = None) -> RecommenderModel:
        """A model with no users and no items yet, to `fit`, `save` or `partial_fit_*`.

        Args:
            config: WALS settings (`walsrec.models.wals_config.WALSConfig`'s keys); missing keys
                keep their defaults, unknown ones are a ConfigError.
        """
        settings = WALSConfig.from_dict(dict(config or {}))
        n_factors = settings.n_factors
        bias = np.zeros(0, np.float32) if settings.use_biases else None
        return cls(
            user_factors=np.zeros((0, n_factors), np.float32),
            item_factors=np.zeros((0, n_factors), np.float32),
            user_bias=bias,
            item_bias=None if bias is None else bias.copy(),
            global_mean=0.0,
            user_ids=np.zeros(0, dtype=object),
            item_ids=np.zeros(0, dtype=object),
            seen=sp.csr_matrix((0, 0), dtype=np.float32),
            item_popularity=np.zeros(0),
            config=settings.to_dict(),
        )

    @property
    def fitted(self) -> bool:
        """Whether the model has items (an `unfitted` model has none)."""
        return self.n_items > 0

    def fit(
        self,
        user_items: sp.spmatrix,
        *,
        user_ids: Sequence[Any] | None = None,
        item_ids: Sequence[Any] | None = None,
        progress: bool = False,
        callback: Callable[[int, Any], bool | None] | None = None,
    ) -> RecommenderModel:
        """Train WALS (TensorFlow, imported here only) on a users x items matrix, in place.

        Args:
            user_items: sparse [n_users, n_items] ratings or counts >= 0 (any scipy format).
            user_ids: id of each row; None names them "0", "1", ...
            item_ids: id of each column; None names them "0", "1", ...
            progress: a progress bar over epochs on a terminal.
            callback: called as callback(epoch, walsrec.models.wals.WALSModel) after each epoch;
                returning True stops training.

        Returns:
            self, fitted with `self.config`.
        """
        from walsrec.models.wals import train_wals  # TensorFlow: training only

        if not sp.issparse(user_items) or user_items.ndim != 2:
            raise DataError(f"user_items must be a 2-D scipy sparse matrix, got {user_items!r}")
        matrix = sp.csr_matrix(user_items, dtype=np.float32)
        n_users, n_items = matrix.shape
        users = _vocabulary(user_ids, n_users, "user_ids")
        items = _vocabulary(item_ids, n_items, "item_ids")
        config = WALSConfig.from_dict(self.config)
        wals = train_wals(matrix, config, progress=progress, callback=callback)
        seen = _canonical_seen(matrix)
        self.user_factors, self.item_factors = wals.user_factors, wals.item_factors
        self.user_bias, self.item_bias = wals.user_bias, wals.item_bias
        self.global_mean = float(wals.global_mean)
        self.user_ids, self.item_ids = users, items
        self.seen = seen
        self.item_popularity = _item_counts(seen)
        self.item_item, self.blend_weight = None, 0.0
        self.config = wals.config.to_dict()
        self.metadata = dict(
            self.metadata,
            history=[
                {"epoch": s.epoch, "loss": float(s.loss), "seconds": float(s.seconds)}
                for s in wals.history
            ],
        )
        self._cache.clear()
        return self

    def recommend(
        self,
        users: Any,
        user_items: Any = None,
        N: int = 10,  # noqa: N803  (implicit's name)
        filter_already_liked_items: bool = True,
        filter_items: Any = None,
        items: Any = None,
        recalculate_user: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The top-N items of one user or of many, the way implicit's `recommend` works.

        Args:
            users: one user id, or a sequence of them (ids, see the note above this method).
            user_items: the users' interactions, one row per user: a CSR matrix
                [len(users), n_items] (columns are item positions), a sequence of item-id
                lists or {item_id: value} mappings, or for one user one list or mapping. Used
                to filter the liked items (instead of the training interactions) and, with
                `recalculate_user`, to fold the users in. None: the training interactions.
            N: items per user (at most the number of candidates).
            filter_already_liked_items: leave out the items in `user_items` (or the training
                interactions). With `items`, they are not left out but ranked last (-inf).
            filter_items: item ids never to recommend (removed from `items` too).
            items: a candidate list: only these items are ranked, and every one of them is
                returned (N permitting), seen ones included.
            recalculate_user: solve the users' factors from `user_items` with the training's
                fold-in (`walsrec.models.fold_in`), so users unknown to the model can be scored.

        Returns:
            (ids, scores): for one user 1-D arrays of item ids (object) and float32 scores,
            best first; for many users 2-D [len(users), N] arrays, a row with fewer
            candidates padded with id None and score -inf.

        Raises:
            UnknownIdError: a user (unless recalculated) or item id is not in the model.
            DataError: malformed user_items, or N < 1.
        """
        self._require_fitted()
        ids, scalar = _id_list(users)
        n = _check_n(N)
        rows = None
        if user_items is not None:
            rows = self._rows(user_items, len(ids), scalar, "user_items", self._index("item"))
        elif recalculate_user:
            raise DataError("recalculate_user=True needs user_items to fold the users in from")
        positions = None if recalculate_user else self._positions(ids, "user")
        liked = None
        if filter_already_liked_items:
            liked = rows if rows is not None else self.seen[positions]
        denied = self._denied_positions(filter_items, "item")
        candidates = None
        if items is not None:
            candidates = self._positions(_id_list(items)[0], "item")
            candidates = candidates[np.sort(np.unique(candidates, return_index=True)[1])]
            candidates = candidates[~np.isin(candidates, denied)]
        allowed = None
        if candidates is None and denied.size:
            allowed = np.ones(self.n_items, dtype=bool)
            allowed[denied] = False
        width = min(n, self.n_items if candidates is None else max(candidates.size, 1))
        out_items = np.full((len(ids), width), PAD_ITEM, dtype=np.int64)
        out_scores = np.full((len(ids), width), -np.inf, dtype=np.float32)
        for start, stop, scores in self._user_score_blocks(positions, rows):
            exclude = None if liked is None else liked[start:stop]
            if candidates is None:
                block_items, block_scores = top_k(scores, width, exclude=exclude, allowed=allowed)
            else:
                block_items, block_scores = _rank_candidates(scores, candidates, exclude, width)
            out_items[start:stop], out_scores[start:stop] = block_items, block_scores
        return self._id_results(out_items, out_scores, scalar, self.item_ids)

    def rank(self, user: Any, candidate_items: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
        """The given items ordered by the user's score (seen ones included), with the scores."""
        candidates = _id_list(candidate_items)[0]
        return self.recommend(
            user, N=max(len(candidates), 1), items=candidates, filter_already_liked_items=False
        )

    def similar_items(
        self,
        items: Any,
        N: int = 10,  # noqa: N803
        filter_items: Any = None,
        items_subset: Any = None,
        item_users: Any = None,
        recalculate_item: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The N items whose factors have the highest cosine similarity with each item's.

        The item itself comes first (similarity 1), as in implicit. An item with no
        interactions has zero factors: it is never a neighbour and has none itself.

        Args:
            items: one item id or many.
            N: neighbours per item.
            filter_items: item ids never returned.
            items_subset: only these item ids may be returned.
            item_users: with `recalculate_item`, the items' interactions, one row per item:
                CSR [len(items), n_users] (columns are user positions) or user-id lists.
            recalculate_item: fold the items in from `item_users` (new items allowed).

        Returns:
            (ids, scores) shaped as `recommend`'s.
        """
        self._require_fitted()
        ids, scalar = _id_list(items)
        query = self._query_factors(ids, scalar, "item", item_users, recalculate_item)
        return self._similar(query, "item", N, filter_items, items_subset, scalar)

    def similar_users(
        self,
        users: Any,
        N: int = 10,  # noqa: N803
        filter_users: Any = None,
        users_subset: Any = None,
        user_items: Any = None,
        recalculate_user: bool = False,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The N users most similar to each user (cosine of the factors), as `similar_items`."""
        self._require_fitted()
        ids, scalar = _id_list(users)
        query = self._query_factors(ids, scalar, "user", user_items, recalculate_user)
        return self._similar(query, "user", N, filter_users, users_subset, scalar)

    def explain(
        self,
        user: Any,
        item: Any,
        user_items: Any = None,
        N: int | None = 10,  # noqa: N803
    ) -> Explanation:
        """How much each of the user's items contributes to the user's score of `item`.

        Follows implicit's ALS `explain` for WALS's weights. Folding the user in solves
        A z = b with b = sum_i coef_i q_i - w0 Q^T o (`walsrec.models.fold_in`), so the score of
        item j is

            q_j . A^-1 b + o_j + global_mean
              = sum_i coef_i (A^-1 q_j) . q_i  +  (o_j + global_mean - (A^-1 q_j) . w0 Q^T o)

        where A^-1 q_j comes from the Cholesky factor of A: item i contributes
        coef_i (A^-1 q_j) . q_i, and the rest are the non-item terms (0 without biases). A
        blended model adds w S[i, j] per item and scales the WALS part by (1 - w). The score
        explained is the folded-in user's (`recommend(..., recalculate_user=True)`), which
        equals the stored factors' score once training has converged.

        Args:
            user: the user id (any id when `user_items` is given).
            item: the item id to explain.
            user_items: the user's interactions (as in `recommend`); None: the training ones.
            N: how many contributions to return, largest first; None for all.

        Returns:
            An `Explanation` (score, contributions [(item_id, value)], non_item_terms).
        """
        self._require_fitted()
        if user_items is not None:
            row = self._rows(user_items, 1, True, "user_items", self._index("item"))
        else:
            row = self.seen[self._positions([str(user)], "user")]
        target = int(self._positions([str(item)], "item")[0])
        fold_in = self.fold_in()
        lhs, _, observed, coefficients = fold_in.normal_equations(row.indices, row.data)
        offset = float(fold_in.offsets[target]) + float(self.global_mean)
        if observed.size == 0:
            return Explanation(score=offset, contributions=[], non_item_terms=offset)
        weighted = linalg.cho_solve(linalg.cho_factor(lhs, lower=True), fold_in.design[target])
        values = coefficients * (fold_in.design[observed] @ weighted)
        non_item = offset - float(weighted @ fold_in.offset_term)
        if self.item_item is not None:
            keep = 1.0 - self.blend_weight
            neighbourhood = self.item_item[observed][:, target].toarray().ravel()
            values = keep * values + self.blend_weight * neighbourhood
            non_item *= keep
        order = np.argsort(-values, kind="stable")
        if N is not None:
            order = order[:N]
        return Explanation(
            score=float(values.sum() + non_item),
            contributions=[(str(self.item_ids[observed[i]]), float(values[i])) for i in order],
            non_item_terms=non_item,
        )

    def partial_fit_users(self, user_ids: Any, user_items: Any) -> RecommenderModel:
        """Fold users in from their interactions: new ids are appended, known ones re-solved.

        Their factors (and biases) are solved against the fixed item factors with the
        training's fold-in (`walsrec.models.fold_in`, the service's), their training interactions
        replaced by `user_items`, and the item popularity recounted.

        Args:
            user_ids: one user id or many (distinct).
            user_items: their interactions, as in `recommend`.

        Returns:
            self.
        """
        self._partial_fit("user", user_ids, user_items)
        return self

    def partial_fit_items(self, item_ids: Any, item_users: Any) -> RecommenderModel:
        """Fold items in from their interactions (by user), as `partial_fit_users` for items.

        New items get no item-item neighbours in a blended model (zero rows and columns).

        Args:
            item_ids: one item id or many (distinct).
            item_users: their interactions, one row per item: CSR [len(items), n_users]
                (columns are user positions), user-id lists or {user_id: value} mappings.

        Returns:
            self.
        """
        new_ids, total = self._partial_fit("item", item_ids, item_users)
        if self.item_item is not None and new_ids:
            self.item_item = sp.csr_matrix(
                (
                    self.item_item.data,
                    self.item_item.indices,
                    np.concatenate(
                        [self.item_item.indptr, np.full(len(new_ids), self.item_item.indptr[-1])]
                    ),
                ),
                shape=(total, total),
            )
        self._cache.clear()
        return self

    def _partial_fit(self, kind: str, ids: Any, interactions: Any) -> tuple[list[str], int]:
        """Fold users or items in (see `partial_fit_users`); the new ids and the new size."""
        self._require_fitted()
        ids, scalar = _id_list(ids)
        other = "item" if kind == "user" else "user"
        rows = self._rows(interactions, len(ids), scalar, f"{kind}_{other}s", self._index(other))
        solver = self.fold_in() if kind == "user" else self._item_fold_in()
        factors, biases = solver.solve_rows(rows)
        positions, new_ids = self._place(ids, kind)
        total = (self.n_users if kind == "user" else self.n_items) + len(new_ids)
        grown = _grown(getattr(self, f"{kind}_factors"), total, positions, factors)
        setattr(self, f"{kind}_factors", grown)
        if getattr(self, f"{kind}_bias") is not None:
            setattr(
                self,
                f"{kind}_bias",
                _grown(getattr(self, f"{kind}_bias"), total, positions, biases),
            )
        vocabulary = np.concatenate([getattr(self, f"{kind}_ids"), np.array(new_ids, dtype=object)])
        setattr(self, f"{kind}_ids", vocabulary)
        if kind == "user":
            self.seen = _replaced_rows(self.seen, total, positions, rows)
        else:
            self.seen = _replaced_rows(self.seen.T.tocsr(), total, positions, rows).T.tocsr()
        self.item_popularity = _item_counts(self.seen)
        self._cache.clear()
        return new_ids, total

    def fold_in(self) -> FoldIn:
        """The NumPy fold-in of users against this model's item factors (cached)."""
        if "fold_in" not in self._cache:
            self._cache["fold_in"] = FoldIn(
                self.config,
                self.item_factors,
                self.item_bias,
                self.global_mean,
                self.item_popularity,
            )
        return self._cache["fold_in"]

    def _item_fold_in(self) -> FoldIn:
        if "item_fold_in" not in self._cache:
            self._cache["item_fold_in"] = FoldIn(
                self.config,
                self.user_factors,
                self.user_bias,
                self.global_mean,
                None,
                solving_items=True,
            )
        return self._cache["item_fold_in"]

    # ------------------------------------------------------------------ helpers of the API

    def _require_fitted(self) -> None:
        if not self.fitted:
            raise DataError("the model is not fitted: call fit (or load a trained model) first")

    def _index(self, kind: str) -> dict[str, int]:
        key = f"{kind}_index"
        if key not in self._cache:
            self._cache[key] = self.user_index() if kind == "user" else self.item_index()
        return self._cache[key]

    def _positions(self, ids: Sequence[str], kind: str) -> np.ndarray:
        index = self._index(kind)
        positions = np.empty(len(ids), dtype=np.int64)
        for number, value in enumerate(ids):
            position = index.get(value)
            if position is None:
                raise UnknownIdError(f"{kind} id {value!r} is not known to the model")
            positions[number] = position
        return positions

    def _optional_positions(self, values: Any, kind: str) -> np.ndarray:
        if values is None:
            return np.zeros(0, dtype=np.int64)
        return self._positions(_id_list(values)[0], kind)

    def _denied_positions(self, values: Any, kind: str) -> np.ndarray:
        """Positions of a deny list; ids the model does not know are never returned anyway."""
        if values is None:
            return np.zeros(0, dtype=np.int64)
        index = self._index(kind)
        known = [index[value] for value in _id_list(values)[0] if value in index]
        return np.array(known, dtype=np.int64)

    def _place(self, ids: list[str], kind: str) -> tuple[np.ndarray, list[str]]:
        """Positions of `ids`, new ones after the existing rows; the new ids in order."""
        if len(set(ids)) != len(ids):
            raise DataError(f"{kind} ids must be distinct in one partial fit")
        index = self._index(kind)
        size = self.n_users if kind == "user" else self.n_items
        new_ids = [value for value in ids if value not in index]
        new_index = {value: size + number for number, value in enumerate(new_ids)}
        positions = [index.get(value, new_index.get(value)) for value in ids]
        return np.array(positions, dtype=np.int64), new_ids

    def _rows(
        self, values: Any, n_rows: int, scalar: bool, name: str, column_index: dict[str, int]
    ) -> sp.csr_matrix:
        """float32 CSR [n_rows, len(column_index)] of interactions given as `values`."""
        n_columns = len(column_index)
        if sp.issparse(values):
            if values.format != "csr":
                raise DataError(
                    f"{name} must be a CSR matrix, got {values.format.upper()}: convert it with "
                    ".tocsr()"
                )
            if values.shape != (n_rows, n_columns):
                raise DataError(
                    f"{name} has shape {values.shape[0]} x {values.shape[1]}, expected "
                    f"{n_rows} x {n_columns} (one row per id, one column per model position)"
                )
            matrix = sp.csr_matrix(values, dtype=np.float32, copy=True)
        else:
            if scalar and (isinstance(values, Mapping) or _flat(values)):
                values = [values]
            if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
                raise DataError(f"{name} must be a CSR matrix or one id list per row")
            if len(values) != n_rows:
                raise DataError(f"{name} has {len(values)} rows for {n_rows} ids")
            rows, columns, data = [], [], []
            for number, entry in enumerate(values):
                pairs = entry.items() if isinstance(entry, Mapping) else ((e, 1.0) for e in entry)
                for key, value in pairs:
                    position = column_index.get(str(key))
                    if position is None:
                        kind = "item" if name.startswith("user") else "user"
                        raise UnknownIdError(f"{name}[{number}]: {kind} id {key!r} is not known")
                    rows.append(number)
                    columns.append(position)
                    data.append(value)
            try:
                data_array = np.asarray(data, dtype=np.float32)
            except (TypeError, ValueError) as exc:
                raise DataError(f"{name}: values must be numbers ({exc})") from exc
            matrix = sp.csr_matrix(
                (data_array, (np.array(rows, np.int64), np.array(columns, np.int64))),
                shape=(n_rows, n_columns),
            )
        matrix.sum_duplicates()
        if matrix.nnz and (not np.all(np.isfinite(matrix.data)) or matrix.data.min() < 0):
            raise DataError(f"{name}: values must be finite numbers >= 0")
        matrix.eliminate_zeros()
        return matrix

    def _user_score_blocks(self, positions: np.ndarray | None, rows: sp.csr_matrix | None):
        """(start, stop, float32 scores [stop - start, n_items]) for known users by position,
        or (positions None) for users folded in from `rows`: one formula, `score_rows`."""
        if positions is None:
            factors, biases = self.fold_in().solve_rows(rows)
            n_rows = rows.shape[0]
        else:
            n_rows = positions.size
        step = chunk_size_for(self.n_items)
        for start in range(0, n_rows, step):
            stop = min(start + step, n_rows)
            if positions is not None:
                yield start, stop, self.score_users(positions[start:stop])
            else:
                part = slice(start, stop)
                yield start, stop, self.score_folded(factors[part], biases[part], rows[part])

    def _query_factors(
        self, ids: list[str], scalar: bool, kind: str, interactions: Any, recalculate: bool
    ) -> np.ndarray:
        """The stored factors of users or items, or (recalculate) folded in from their rows."""
        if not recalculate:
            table = self.item_factors if kind == "item" else self.user_factors
            return table[self._positions(ids, kind)]
        other = "user" if kind == "item" else "item"
        name = f"{kind}_{other}s"
        if interactions is None:
            raise DataError(f"recalculate_{kind}=True needs {name} to fold the {kind}s in")
        rows = self._rows(interactions, len(ids), scalar, name, self._index(other))
        solver = self._item_fold_in() if kind == "item" else self.fold_in()
        return solver.solve_rows(rows)[0]

    def _similar(
        self, query: np.ndarray, kind: str, n: int, denied: Any, subset: Any, scalar: bool
    ) -> tuple[np.ndarray, np.ndarray]:
        table = self.item_factors if kind == "item" else self.user_factors
        ids = self.item_ids if kind == "item" else self.user_ids
        key = f"unit_{kind}_factors"
        if key not in self._cache:
            norms = np.linalg.norm(table, axis=1)
            self._cache[key] = (table / np.maximum(norms, 1e-30)[:, np.newaxis], norms > 0)
        unit, has_factors = self._cache[key]
        allowed = has_factors.copy()  # zero factors (no interactions): never a neighbour
        allowed[self._denied_positions(denied, kind)] = False
        if subset is not None:
            chosen = np.zeros(allowed.size, dtype=bool)
            chosen[self._optional_positions(subset, kind)] = True
            allowed &= chosen
        width = min(_check_n(n), max(int(allowed.sum()), 1))
        norms = np.linalg.norm(query, axis=1)
        scores = (query / np.maximum(norms, 1e-30)[:, np.newaxis]) @ unit.T
        scores[norms == 0] = -np.inf  # a zero query has no neighbours
        found, found_scores = top_k(scores, width, allowed=allowed)
        return self._id_results(found, found_scores, scalar, ids)

    @staticmethod
    def _id_results(
        positions: np.ndarray, scores: np.ndarray, scalar: bool, ids: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        valid = positions != PAD_ITEM
        found = np.empty(positions.shape, dtype=object)
        found[valid] = ids[positions[valid]]
        if scalar:
            return found[0][valid[0]], scores[0][valid[0]]
        return found, scores

    def save(self, path: str | Path | IO[bytes]) -> None:
        """Write the model as plain files: into a folder, or into one archive file.

        Args:
            path: a folder (created if needed); or one file, when `path` ends in ".zip" or
                ".npz" or is a binary file object: a zip archive of exactly the folder's files
                (.npy arrays and JSON, no pickle), which `load` reads back.
        """
        if _is_archive(path):
            with tempfile.TemporaryDirectory(prefix="walsrec-model-") as folder:
                self._save_folder(folder)
                with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
                    for file in sorted(Path(folder).iterdir()):
                        archive.write(file, file.name)
            return
        self._save_folder(path)

    def _save_folder(self, directory: str | Path) -> None:
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
    def load(cls, path: str | Path | IO[bytes]) -> RecommenderModel:
        """Read a model written by `save` (a folder, or one archive file or file object),
        verify and validate it; a DataError naming the file for anything else (a missing,
        truncated, edited or inconsistent file)."""
        if not hasattr(path, "read") and Path(path).is_dir():
            return cls._load_folder(path)
        name = getattr(path, "name", None) if hasattr(path, "read") else str(path)
        if not hasattr(path, "read") and not Path(path).is_file():
            raise DataError(f"{path}: no such model folder or file")
        with tempfile.TemporaryDirectory(prefix="walsrec-model-") as folder:
            try:
                with zipfile.ZipFile(path) as archive:
                    for member in archive.infolist():
                        if not _ARCHIVE_MEMBER.fullmatch(member.filename):
                            raise DataError(f"{name}: unexpected member {member.filename!r}")
                        if member.file_size > _MAX_MEMBER_BYTES:
                            raise DataError(f"{name}: member {member.filename!r} is too large")
                        archive.extract(member, folder)
            except (zipfile.BadZipFile, OSError, EOFError) as exc:
                raise DataError(f"{name}: not a walsrec model archive ({exc})") from exc
            try:
                return cls._load_folder(folder)
            except DataError as exc:
                raise DataError(str(exc).replace(folder, f"{name}:")) from exc

    @classmethod
    def _load_folder(cls, directory: str | Path) -> RecommenderModel:
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


# Members of a one-file model: the folder's plain file names, nothing else (no paths).
_ARCHIVE_MEMBER = re.compile(r"[a-z_]+\.(npy|json)")
_MAX_MEMBER_BYTES = 1 << 34
_ARCHIVE_SUFFIXES = (".zip", ".npz")


def _is_archive(path: Any) -> bool:
    return hasattr(path, "write") or Path(path).suffix.lower() in _ARCHIVE_SUFFIXES


class UnknownIdError(DataError, KeyError):
    """A user or item id that the model does not know (a DataError and a KeyError)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class Explanation(NamedTuple):
    """`RecommenderModel.explain`'s answer: score = sum of all contributions + non_item_terms."""

    score: float
    contributions: list[tuple[str, float]]
    non_item_terms: float


class _Factors(NamedTuple):
    """Folded-in users in the shape `score_rows` reads."""

    user_factors: np.ndarray
    item_factors: np.ndarray
    user_bias: np.ndarray | None
    item_bias: np.ndarray | None
    global_mean: float


def _id_list(values: Any) -> tuple[list[str], bool]:
    """(ids as strings, whether one id was given rather than a sequence)."""
    if isinstance(values, str | bytes) or np.isscalar(values):
        return [str(values)], True
    if sp.issparse(values) or isinstance(values, Mapping):
        raise DataError(f"expected an id or a sequence of ids, got {type(values).__name__}")
    return [str(value) for value in np.asarray(values, dtype=object).reshape(-1)], False


def _flat(values: Any) -> bool:
    """A sequence of ids (one row), not a sequence of rows."""
    if isinstance(values, str | bytes) or not isinstance(values, Sequence | np.ndarray):
        return False
    return all(isinstance(v, str | bytes) or np.isscalar(v) for v in values)


def _check_n(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 1:
        raise DataError(f"N must be an integer >= 1, got {n!r}")
    return int(n)


def _vocabulary(ids: Sequence[Any] | None, size: int, name: str) -> np.ndarray:
    if ids is None:
        return np.array([str(i) for i in range(size)], dtype=object)
    vocabulary = np.array([str(value) for value in ids], dtype=object)
    if vocabulary.size != size or len(set(vocabulary)) != size:
        raise DataError(f"{name} must hold {size} distinct ids, got {vocabulary.size}")
    return vocabulary


def _canonical_seen(matrix: sp.spmatrix) -> sp.csr_matrix:
    seen = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    seen.sum_duplicates()
    seen.eliminate_zeros()
    return seen


def _item_counts(seen: sp.csr_matrix) -> np.ndarray:
    return PopularityModel.fit(seen).item_counts


def _grown(values: np.ndarray, size: int, positions: np.ndarray, new: np.ndarray) -> np.ndarray:
    """`values` extended with zero rows to `size` rows, rows `positions` set to `new`."""
    grown = np.zeros((size, *values.shape[1:]), dtype=values.dtype)
    grown[: values.shape[0]] = values
    grown[positions] = new
    return grown


def _replaced_rows(
    matrix: sp.csr_matrix, size: int, positions: np.ndarray, rows: sp.csr_matrix
) -> sp.csr_matrix:
    """`matrix` with `size` rows (empty new ones), rows `positions` replaced by `rows`."""
    extended = sp.vstack(
        [matrix, sp.csr_matrix((size - matrix.shape[0], matrix.shape[1]), dtype=np.float32)]
    ).tocsr()
    keep = np.ones(size, dtype=np.float32)
    keep[positions] = 0.0
    placement = sp.csr_matrix(
        (np.ones(positions.size, np.float32), (positions, np.arange(positions.size))),
        shape=(size, positions.size),
    )
    replaced = sp.diags(keep).tocsr() @ extended + placement @ rows.astype(np.float32)
    return _canonical_seen(replaced)


def _rank_candidates(
    scores: np.ndarray, candidates: np.ndarray, exclude: sp.csr_matrix | None, width: int
) -> tuple[np.ndarray, np.ndarray]:
    """Rank the candidate columns of `scores`; excluded candidates follow, in the given order,
    with score -inf (kept, not dropped). Item positions [rows, width] and float32 scores."""
    if candidates.size == 0:
        empty = np.full((scores.shape[0], width), PAD_ITEM, dtype=np.int64)
        return empty, np.full(empty.shape, -np.inf, dtype=np.float32)
    local_exclude = None if exclude is None else exclude[:, candidates]
    local, local_scores = top_k(scores[:, candidates], candidates.size, exclude=local_exclude)
    for row in range(local.shape[0]):
        valid = local[row] != PAD_ITEM
        if not valid.all():
            rest = np.setdiff1d(np.arange(candidates.size), local[row][valid])
            local[row, ~valid] = rest
    return candidates[local[:, :width]], local_scores[:, :width]


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
