"""Online recommendation over a loaded `RecommenderModel`: the logic behind every endpoint.

Framework-free (neither BentoML nor ZenML), so the service and the benchmark's bare ASGI app run
exactly the same code. Ids are the users' original ids (strings). Every method either returns a
plain dict or raises `RequestError` naming the request field at fault.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from serving.schemas import MAX_ANSWER_ITEMS
from walsrec.inference.item_table import ItemFilter
from walsrec.inference.topk import PAD_ITEM, top_k
from walsrec.models.recommender import RecommenderModel

__all__ = ["OnlineRecommender", "RequestError"]

# Scores computed at once for a batch: users are scored in blocks of at most this many scores
# (16 MiB of float32), one matrix product per block; a 1,000-user batch on MovieLens-100K is one
# block, on MovieLens-20M (26,744 items) five.
SCORE_BLOCK_ELEMENTS = 1 << 22


@dataclass
class RequestError(Exception):
    """A request the model cannot answer: `field` names the field at fault, `status` its code."""

    field: str
    message: str
    status: int = 400

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class OnlineRecommender:
    """Answers single requests fast: everything per-model is prepared once here.

    Args:
        model: the trained model (its arrays are used as they are, not copied).
        item_fields: the item table's fields (walsrec.inference.item_table), one value per item,
            that `where` conditions filter on; None: the model has no item table.
    """

    def __init__(self, model: RecommenderModel, item_fields: dict[str, list] | None = None) -> None:
        self.model = model
        self.item_ids = [str(item) for item in model.item_ids]
        self.user_position = model.user_index()
        self.item_position = model.item_index()
        self.titles = [model.item_titles.get(item) for item in self.item_ids]
        self.seen = model.seen.tocsr()
        popularity = np.asarray(model.item_popularity, dtype=np.float64)
        self.popularity = popularity
        # Most popular first; ties to the lower item index (stable sort of the negated counts).
        self.popularity_order = np.argsort(-popularity, kind="stable")
        self.item_filter = None if item_fields is None else ItemFilter(item_fields, model.n_items)
        # WALS's part only: a blended model's factors are WALS's, its item-item part is added
        # from the given items by `score_folded`, as for a known user from their training items.
        self.fold_in = model.fold_in()  # the model's own (cached), shared with `explain`
        # Build the model's cached unit factors now, not in the first /similar_* request.
        if model.n_users > 1:
            model.similar_users(str(model.user_ids[0]), N=1)
            model.similar_items(str(model.item_ids[0]), N=1)

    @property
    def n_items(self) -> int:
        return self.model.n_items

    # ------------------------------------------------------------------ endpoints' logic

    def recommend(
        self,
        user_id: str,
        k: int = 10,
        exclude_seen: bool = True,
        allow_items: list[str] | None = None,
        deny_items: list[str] | None = None,
        where: dict | None = None,
    ) -> dict:
        """Top-k for a known user; the popularity ranking (flagged) for an unknown one.

        `allow_items`, `deny_items` and the item-table conditions `where` restrict the
        candidates (all must hold)."""
        self.check_k(k)
        candidates, unknown_items = self._candidates(allow_items, deny_items, where)
        (answer,) = self._recommend_users([user_id], k, exclude_seen, candidates)
        answer["unknown_items"] = unknown_items
        return answer

    def recommend_batch(
        self, user_ids: list[str], k: int = 10, exclude_seen: bool = True, where: dict | None = None
    ) -> dict:
        """Top-k for each user (as `recommend`), users x k capped at MAX_ANSWER_ITEMS."""
        self.check_k(k, users=len(user_ids))
        candidates, _ = self._candidates(None, None, where)
        results = self._recommend_users(user_ids, k, exclude_seen, candidates)
        for answer in results:
            answer["unknown_items"] = []
        return {"results": results}

    def _recommend_users(
        self, user_ids: list[str], k: int, exclude_seen: bool, candidates: np.ndarray | None
    ) -> list[dict]:
        """Answers for users, known ones scored in blocks (one matrix product per block)."""
        positions = [self.user_position.get(user) for user in user_ids]
        known = [i for i, position in enumerate(positions) if position is not None]
        answers: list[dict | None] = [None] * len(user_ids)
        block = max(1, SCORE_BLOCK_ELEMENTS // self.n_items)
        for start in range(0, len(known), block):
            rows = known[start : start + block]
            users = np.array([positions[i] for i in rows], dtype=np.int64)
            scores = self._user_scores(users, exclude_seen)
            items, item_scores = top_k(scores, k, allowed=candidates)
            for row, index in enumerate(rows):
                answers[index] = self._answer(
                    items[row], item_scores[row], user_id=user_ids[index], fallback=False
                )
        if len(known) < len(user_ids):
            items, scores = self._popular(k, candidates)
            popular = self._answer(items, scores)["items"]
            for index, answer in enumerate(answers):
                if answer is None:
                    answers[index] = dict(user_id=user_ids[index], fallback=True, items=popular)
        return answers

    def _user_scores(self, users: np.ndarray, exclude_seen: bool) -> np.ndarray:
        """float32 [len(users), n_items] scores of known users; seen items -inf if excluded.
        The model's own scores (`score_rows`, blended), as evaluation and batch inference."""
        scores = self.model.score_users(users)
        if exclude_seen:
            # Straight from the CSR arrays: scipy's row indexing (`seen[users]`) cost about
            # 40 us, a tenth of a one-user request on a 3,706-item catalogue.
            indptr, indices = self.seen.indptr, self.seen.indices
            starts, lengths = indptr[users], indptr[users + 1] - indptr[users]
            if users.size == 1:
                scores[0, indices[starts[0] : starts[0] + lengths[0]]] = -np.inf
            else:
                rows = np.repeat(np.arange(users.size), lengths)
                offsets = np.arange(rows.size) - np.repeat(np.cumsum(lengths) - lengths, lengths)
                scores[rows, indices[np.repeat(starts, lengths) + offsets]] = -np.inf
        return scores

    def recommend_for_items(
        self,
        item_ids: list[str],
        ratings: list[float] | None = None,
        k: int = 10,
        exclude_given: bool = True,
        allow_items: list[str] | None = None,
        deny_items: list[str] | None = None,
        where: dict | None = None,
    ) -> dict:
        """Top-k for a new user described by items (and ratings), folded in without retraining.

        Unknown items are ignored and listed back; when none is known the answer is the
        popularity ranking, flagged as a fallback.
        """
        self.check_k(k)
        if ratings is not None and len(ratings) != len(item_ids):
            raise RequestError("ratings", f"has {len(ratings)} values for {len(item_ids)} item_ids")
        known = [self.item_position.get(item) for item in item_ids]
        unknown_given = [item for item, index in zip(item_ids, known, strict=True) if index is None]
        keep = [i for i, index in enumerate(known) if index is not None]
        candidates, unknown_listed = self._candidates(allow_items, deny_items, where)
        unknown = unknown_given + unknown_listed
        if not keep:
            items, scores = self._popular(k, candidates)
            return self._answer(items, scores, user_id=None, fallback=True, unknown=unknown)
        indices = np.array([known[i] for i in keep], dtype=np.int64)
        values = None if ratings is None else np.array([ratings[i] for i in keep], np.float64)
        if values is not None and values.min() < 0:
            raise RequestError("ratings", "must be >= 0 (ratings or counts)")
        factors, bias = self.fold_in.solve(indices, values)
        given = indices if values is None else indices[values > 0]
        row = sp.csr_matrix(  # the given item set (read by a blended model)
            (np.ones(given.size, np.float32), (np.zeros(given.size, np.int64), given)),
            shape=(1, self.n_items),
        )
        scores = self.model.score_folded(factors[np.newaxis], np.float32([bias]), row)[0]
        if exclude_given:
            scores[indices] = -np.inf
        items, item_scores = top_k(scores[np.newaxis, :], k, allowed=candidates)
        return self._answer(items[0], item_scores[0], user_id=None, fallback=False, unknown=unknown)

    def similar_items(self, item_id: str, k: int = 10) -> dict:
        """The k items whose factors have the highest cosine similarity with `item_id`'s
        (`RecommenderModel.similar_items`: zero-factor items are never neighbours)."""
        if item_id not in self.item_position:
            raise RequestError("item_id", f"item {item_id!r} is not known to the model", 404)
        self.check_k(k)
        ids, scores = self.model.similar_items(item_id, N=k, filter_items=[item_id])
        items = np.array([self.item_position[item] for item in ids], dtype=np.int64)
        return self._answer(items, scores, item_id=item_id)

    def similar_users(self, user_id: str, k: int = 10) -> dict:
        """The k users whose factors have the highest cosine similarity with `user_id`'s
        (`RecommenderModel.similar_users`: zero-factor users are never neighbours)."""
        if user_id not in self.user_position:
            raise RequestError("user_id", f"user {user_id!r} is not known to the model", 404)
        if not 1 <= k < self.model.n_users:
            raise RequestError(
                "k", f"must be between 1 and {self.model.n_users - 1} (the other users), got {k}"
            )
        ids, scores = self.model.similar_users(user_id, N=k, filter_users=[user_id])
        return {
            "user_id": user_id,
            "users": [
                {"user_id": str(user), "score": float(score)}
                for user, score in zip(ids.tolist(), scores.tolist(), strict=True)
            ],
        }

    def rank(
        self,
        user_id: str,
        item_ids: list[str],
        exclude_seen: bool = False,
        where: dict | None = None,
    ) -> dict:
        """The caller's candidates re-ordered by the user's scores, best first.

        Seen items stay in an explicit list unless `exclude_seen`; candidates failing `where`
        are dropped; unknown ids are listed back. An unknown user gets the candidates by
        popularity, flagged `fallback`."""
        unknown: list[str] = []
        positions = self._positions(item_ids, unknown)
        positions = np.unique(positions)  # a candidate listed twice is ranked once
        if where:
            positions = positions[self._where_mask(where)[positions]]
        user = self.user_position.get(user_id)
        if user is None:
            values = self.popularity[positions]
        else:
            values = self._user_scores(np.array([user]), exclude_seen)[0, positions]
            keep = np.isfinite(values)  # seen items excluded on request
            positions, values = positions[keep], values[keep]
        order = np.argsort(-values, kind="stable")
        return self._answer(
            positions[order], values[order], user_id=user_id, fallback=user is None,
            unknown=unknown,
        )  # fmt: skip

    def explain(self, user_id: str, item_id: str, k: int = 10) -> dict:
        """Which of the user's training items drive their score of `item_id`, largest first.

        `RecommenderModel.explain`: the user folded in from their training items, the score
        split into one contribution per item plus the non-item terms (biases, mean), which
        sum to it."""
        if user_id not in self.user_position:
            raise RequestError("user_id", f"user {user_id!r} is not known to the model", 404)
        position = self.item_position.get(item_id)
        if position is None:
            raise RequestError("item_id", f"item {item_id!r} is not known to the model", 404)
        explanation = self.model.explain(user_id, item_id, N=k)
        return {
            "user_id": user_id,
            "item_id": item_id,
            "title": self.titles[position],
            "score": explanation.score,
            "non_item_terms": explanation.non_item_terms,
            "contributions": [
                {
                    "item_id": item,
                    "contribution": value,
                    "title": self.titles[self.item_position[item]],
                }
                for item, value in explanation.contributions
            ],
        }

    def score(self, user_id: str, item_ids: list[str]) -> dict:
        """Predicted scores of a user for items; an unknown user gets the items' popularity."""
        positions = [self.item_position.get(item) for item in item_ids]
        unknown = [item for item, index in zip(item_ids, positions, strict=True) if index is None]
        known = np.array([p for p in positions if p is not None], dtype=np.int64)
        user = self.user_position.get(user_id)
        if user is None:
            values = self.popularity[known]
        else:  # the model's own pair formula, item-item part included
            values = self.model.predict(np.full(known.size, user, dtype=np.int64), known)
        return {
            "user_id": user_id,
            "fallback": user is None,
            "scores": [
                {"item_id": self.item_ids[i], "score": float(v)}
                for i, v in zip(known, values, strict=True)
            ],
            "unknown_items": unknown,
        }

    def info(self, model_tag: str, labels: dict[str, str]) -> dict:
        """What is being served: version, training time, metrics and sizes."""
        metadata = self.model.metadata
        return {
            "bento_model": model_tag,
            "model_name": labels.get("zenml_model", ""),
            "model_version": labels.get("zenml_version", ""),
            "trained_at": metadata.get("trained_at"),
            "metrics": metadata.get("metrics", {}),
            "n_users": self.model.n_users,
            "n_items": self.model.n_items,
            "n_factors": self.model.n_factors,
            "has_biases": self.model.user_bias is not None,
            "item_fields": [] if self.item_filter is None else self.item_filter.fields,
        }

    # ------------------------------------------------------------------ helpers

    def check_k(self, k: int, users: int = 1) -> None:
        """k must lie in [1, number of items], and users x k within MAX_ANSWER_ITEMS."""
        if not 1 <= k <= self.n_items:
            raise RequestError("k", f"must be between 1 and {self.n_items} (the items), got {k}")
        if users * k > MAX_ANSWER_ITEMS:
            raise RequestError(
                "k",
                f"{users} users x k = {users * k} items exceeds the cap of {MAX_ANSWER_ITEMS} "
                "items per answer: ask for fewer users or a smaller k",
            )

    def _candidates(
        self, allow_items: list[str] | None, deny_items: list[str] | None, where: dict | None = None
    ) -> tuple[np.ndarray | None, list[str]]:
        """Boolean mask of recommendable items (None: all) and the unknown ids in the lists."""
        if allow_items is None and not deny_items and not where:
            return None, []
        unknown: list[str] = []
        if allow_items is None:
            mask = np.ones(self.n_items, dtype=bool)
        else:
            mask = np.zeros(self.n_items, dtype=bool)
            mask[self._positions(allow_items, unknown)] = True
        if deny_items:
            mask[self._positions(deny_items, unknown)] = False
        if where:
            mask &= self._where_mask(where)
        return mask, unknown

    def _where_mask(self, where: dict) -> np.ndarray:
        if self.item_filter is None:
            raise RequestError(
                "where", "this model was packaged without an item table (deploy --item-metadata)"
            )
        try:
            return self.item_filter.mask(where)
        except KeyError as missing:
            fields = ", ".join(self.item_filter.fields)
            raise RequestError(
                f"where.{missing.args[0]}", f"not a field of the item table (fields: {fields})"
            ) from None

    def _positions(self, item_ids: list[str], unknown: list[str]) -> np.ndarray:
        positions = []
        for item in item_ids:
            index = self.item_position.get(item)
            if index is None:
                unknown.append(item)
            else:
                positions.append(index)
        return np.array(positions, dtype=np.int64)

    def _popular(self, k: int, candidates: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        order = self.popularity_order
        if candidates is not None:
            order = order[candidates[order]]
        items = order[:k]
        return items, self.popularity[items]

    def _answer(self, items: np.ndarray, scores: np.ndarray, unknown=None, **fields) -> dict:
        """An answer's fields and its ranked items (PAD_ITEM slots dropped)."""
        valid = items != PAD_ITEM
        answer = dict(fields)
        answer["items"] = [
            {"item_id": self.item_ids[i], "score": float(s), "title": self.titles[i]}
            for i, s in zip(items[valid].tolist(), scores[valid].tolist(), strict=True)
        ]
        if unknown is not None:
            answer["unknown_items"] = unknown
        return answer
