"""Non-personalized baselines that a learned model has to beat."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse

from walsrec.errors import DataError

__all__ = ["PopularityModel"]


@dataclass(frozen=True)
class PopularityModel:
    """Recommends the items with the most training interactions to every user.

    Attributes:
        item_counts: float64 `[n_items]`, the number of users who interacted with each item in
            the training matrix (stored nonzero entries per column; the values themselves, e.g.
            ratings, are ignored).
    """

    item_counts: np.ndarray

    @classmethod
    def fit(cls, train: scipy.sparse.csr_matrix) -> PopularityModel:
        """Counts the interactions per item.

        Args:
            train: Sparse interaction matrix `[n_users, n_items]`. Stored nonzero entries are
                interactions; explicit zeros and duplicate (user, item) entries count once at
                most, so the count is the number of distinct users per item.

        Returns:
            The fitted model.

        Raises:
            DataError: If `train` is not a 2-D scipy.sparse matrix.
        """
        if not scipy.sparse.issparse(train) or train.ndim != 2:
            raise DataError(
                f"PopularityModel.fit: train must be a 2-D scipy.sparse matrix, got "
                f"{type(train).__name__}"
            )
        n_items = train.shape[1]
        if train.format == "csr" and train.has_canonical_format:
            # The split's matrices: sorted, no duplicates, so each stored nonzero is one user.
            # On the ML-20M shape: 15M entries counted without a copy (0.19 s against 0.95 s).
            indices = train.indices
            if not np.all(train.data != 0):
                indices = indices[train.data != 0]
            counts = np.bincount(indices, minlength=n_items)
            return cls(item_counts=counts.astype(np.float64))
        interactions = scipy.sparse.csr_matrix(train, copy=True)
        # Zeros go first and the values become 1 before merging duplicates, so that neither a
        # rating's size nor entries that happen to cancel out change the count.
        interactions.eliminate_zeros()
        interactions.data = np.ones_like(interactions.data)
        interactions.sum_duplicates()
        counts = np.bincount(interactions.indices, minlength=n_items)
        return cls(item_counts=counts.astype(np.float64))

    @property
    def n_items(self) -> int:
        """Number of items in the catalogue."""
        return int(self.item_counts.shape[0])

    def score_users(self, users: np.ndarray) -> np.ndarray:
        """Scores every item for each user: the same popularity row for everyone.

        Any user index is accepted (including users unseen in training), since the scores do not
        depend on the user.

        Args:
            users: 1-D array of user indices.

        Returns:
            float32 `[len(users), n_items]`, each row equal to `item_counts`. It is a read-only
            broadcast view, so it costs no memory per user; copy it before writing to it.

        Raises:
            DataError: If `users` is not 1-D.
        """
        users = np.asarray(users)
        if users.ndim != 1:
            raise DataError(f"PopularityModel.score_users: users must be 1-D, got {users.shape}")
        row = self.item_counts.astype(np.float32)
        return np.broadcast_to(row, (users.shape[0], row.shape[0]))

    def recommend(
        self, users: np.ndarray, k: int, exclude: scipy.sparse.csr_matrix | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Top-k for each user, as `walsrec.inference.topk.recommend` over `score_users` gives it
        (the most popular unexcluded items, ties to the lower index), from one ranking of the items.

        Returns:
            `(items, item_scores)`: int64 and float32 `[len(users), k]`.
        """
        from walsrec.inference.topk import recommend_same_scores

        return recommend_same_scores(self.item_counts, users, k, exclude=exclude)
