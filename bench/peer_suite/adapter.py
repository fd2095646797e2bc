"""implicit's `AlternatingLeastSquares` interface over
`walsrec.models.recommender.RecommenderModel`.

The peer suite (implicit's tests/recommender_base_test.py) talks to a model by positions
(integers) and implicit's names; walsrec's model talks ids. A model fitted on a bare matrix
names its rows and columns "0", "1", ..., so this adapter only converts integers to those ids
and back, pads interaction rows to the model's current width (implicit grows its factor arrays
to the largest position a partial fit names, walsrec appends new ids), and maps errors and
warnings to implicit's types. Everything the tests check is computed by walsrec.

Settings mean what they mean in implicit: confidence alpha * r against weight 1 for the
unobserved entries (walsrec's "proportional" weighting), `iterations` epochs, CG with 3 steps
(implicit's default) or the exact solve. implicit allows regularization 0; walsrec requires > 0,
so 0 runs with `MIN_REGULARIZATION`.
"""

from __future__ import annotations

import io
import warnings
from typing import Any

import numpy as np
import scipy.sparse as sp

from walsrec.models.recommender import RecommenderModel, UnknownIdError

try:  # the suite imports implicit anyway; the adapter itself only needs its warning type
    from implicit.utils import ParameterWarning
except ImportError:  # pragma: no cover

    class ParameterWarning(UserWarning):  # type: ignore[no-redef]
        pass


MIN_REGULARIZATION = 1e-6
_PARAMETERS = ("factors", "regularization", "alpha", "iterations", "use_cg", "random_state")


class WalsrecALS:
    """implicit.als.AlternatingLeastSquares's constructor, methods and results, by position."""

    def __init__(
        self,
        factors: int = 100,
        regularization: float = 0.01,
        alpha: float = 1.0,
        iterations: int = 15,
        use_cg: bool = True,
        random_state: int | None = None,
        **_ignored: Any,  # use_gpu, use_native, num_threads, calculate_training_loss, dtype
    ) -> None:
        self.factors = factors
        self.regularization = regularization
        self.alpha = alpha
        self.iterations = iterations
        self.use_cg = use_cg
        self.random_state = random_state
        self.model: RecommenderModel | None = None

    # ------------------------------------------------------------------ fitting

    def _config(self) -> dict:
        return {
            "n_factors": self.factors,
            "regularization": max(float(self.regularization), MIN_REGULARIZATION),
            "alpha": self.alpha,
            "observed_weighting": "proportional",
            "epochs": max(int(self.iterations), 1),
            "seed": self.random_state or 0,
            "solver": "cg" if self.use_cg else "cholesky",
            "cg_steps": 3,
        }

    def fit(self, user_items: Any, show_progress: bool = True, callback: Any = None) -> None:
        if not isinstance(user_items, sp.csr_matrix):
            warnings.warn("user_items is not CSR: converting", ParameterWarning, stacklevel=2)
        model = RecommenderModel.unfitted(self._config())
        wrapped = None
        if callback is not None:

            def wrapped(epoch: int, wals: Any) -> None:
                callback(epoch, 0.0, wals.history[-1].loss)

        self.model = model.fit(sp.csr_matrix(user_items), progress=False, callback=wrapped)

    # ------------------------------------------------------------------ queries

    def recommend(
        self,
        userid: Any,
        user_items: Any = None,
        N: int = 10,  # noqa: N803
        filter_already_liked_items: bool = True,
        filter_items: Any = None,
        recalculate_user: bool = False,
        items: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        model = self._fitted()
        ids, scores = _positions_of(
            model.recommend,
            _ids(userid),
            user_items=_width(user_items, model.n_items),
            N=N,
            filter_already_liked_items=filter_already_liked_items,
            filter_items=None if filter_items is None else _ids(filter_items),
            items=None if items is None else _ids(items),
            recalculate_user=recalculate_user,
        )
        return ids, scores

    def similar_items(
        self,
        itemid: Any,
        N: int = 10,  # noqa: N803
        recalculate_item: bool = False,
        item_users: Any = None,
        filter_items: Any = None,
        items: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        model = self._fitted()
        return _positions_of(
            model.similar_items,
            _ids(itemid),
            N=N,
            filter_items=None if filter_items is None else _ids(filter_items),
            items_subset=None if items is None else _ids(items),
            item_users=_width(item_users, model.n_users) if recalculate_item else None,
            recalculate_item=recalculate_item,
        )

    def similar_users(
        self,
        userid: Any,
        N: int = 10,  # noqa: N803
        filter_users: Any = None,
        users: Any = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        return _positions_of(
            self._fitted().similar_users,
            _ids(userid),
            N=N,
            filter_users=None if filter_users is None else _ids(filter_users),
            users_subset=None if users is None else _ids(users),
        )

    def explain(self, userid: Any, user_items: Any, itemid: int, N: int = 10) -> tuple:
        model = self._fitted()
        row = _width(user_items, model.n_items)[int(userid)]
        explanation = model.explain(str(userid), str(itemid), user_items=row, N=N)
        contributions = [(int(item), value) for item, value in explanation.contributions]
        return explanation.score, contributions, None

    def partial_fit_users(self, userids: Any, user_items: Any) -> None:
        model = self._fitted()
        model.partial_fit_users(_ids(userids), _width(user_items, model.n_items))

    def partial_fit_items(self, itemids: Any, item_users: Any) -> None:
        model = self._fitted()
        model.partial_fit_items(_ids(itemids), _width(item_users, model.n_users))

    # ------------------------------------------------------------------ files and pickle

    def save(self, file: Any) -> None:
        model = self.model or RecommenderModel.unfitted(self._config())
        model.metadata["implicit_parameters"] = {key: getattr(self, key) for key in _PARAMETERS}
        model.save(file)

    @classmethod
    def load(cls, file: Any) -> WalsrecALS:
        model = RecommenderModel.load(file)
        adapter = cls(**model.metadata.get("implicit_parameters", {}))
        adapter.model = model if model.fitted else None
        return adapter

    def __getstate__(self) -> dict:
        # Pickling (the suite's test_pickle) goes through the plain-file format: no array or
        # model object is pickled, only the one-file archive's bytes.
        buffer = io.BytesIO()
        self.save(buffer)
        return {"archive": buffer.getvalue()}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(WalsrecALS.load(io.BytesIO(state["archive"])).__dict__)

    def _fitted(self) -> RecommenderModel:
        if self.model is None:
            raise ValueError("the model is not fitted")
        return self.model


def _ids(values: Any) -> Any:
    """Positions -> the ids of a model fitted on a bare matrix ("0", "1", ...)."""
    if np.isscalar(values):
        return str(values)
    return [str(value) for value in np.asarray(values).reshape(-1)]


def _width(matrix: Any, columns: int) -> Any:
    """A CSR row block with `columns` columns (implicit passes rows as wide as it was fitted)."""
    if matrix is None or not sp.issparse(matrix) or matrix.format != "csr":
        return matrix
    if matrix.shape[1] < columns:
        padding = sp.csr_matrix((matrix.shape[0], columns - matrix.shape[1]))
        matrix = sp.hstack([matrix, padding], format="csr")
    return matrix


def _positions_of(method: Any, *args: Any, **kwargs: Any) -> tuple[np.ndarray, np.ndarray]:
    """Call `method`; ids back to positions (-1 for padding), unknown ids as IndexError."""
    try:
        ids, scores = method(*args, **kwargs)
    except UnknownIdError as error:
        raise IndexError(str(error)) from error
    # int32, as implicit returns them (its evaluation's Cython code requires it).
    positions = np.vectorize(lambda value: -1 if value is None else int(value), otypes=[np.int32])
    return (positions(ids) if ids.size else ids.astype(np.int32)), scores
