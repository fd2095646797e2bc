"""The real-time recommendation service: one BentoML service over a packaged walsrec model.

    bentoml serve serving.service:WalsrecService      # or: python run.py serve

Endpoints (POST, JSON only): /recommend, /recommend_batch, /recommend_for_items, /similar_items,
/similar_users, /rank, /explain, /score, /model_info; BentoML's /healthz, /livez and /readyz;
/metrics and /docs.json served by the guard (serving/guard.py), which answers every 401, 413
and 415 before BentoML sees the request. The model is the BentoML model `walsrec:latest` unless
WALSREC_MODEL_TAG names another; it is loaded and validated once per worker (a model that fails
validation is never ready), with the item table packaged beside it, if any. The guard wraps
the whole app BentoML builds; its fast path computes small requests (one user over a bounded
catalogue) on the event loop and the rest in bounded threads (serving/fast_path.py). This
module imports neither ZenML nor TensorFlow, so a worker starts in about a second.

Environment:
    WALSREC_API_TOKEN      bearer token required on every endpoint but health (unset: open; set
                           but empty: the server refuses to start).
    WALSREC_MODEL_TAG      BentoML model tag to serve (default walsrec:latest).
    WALSREC_MAX_BODY_BYTES request body cap in bytes (default 1 MiB).
    WALSREC_MAX_HEADER_BYTES, WALSREC_HEADER_TIMEOUT  request header cap (16 KiB) and deadline
                           (10 s) (serving/http_protocol.py).
    WALSREC_WORKERS        server worker processes (default 2; see bench/serve/README.md).
    WALSREC_THREADS        endpoint threads per worker (default 2).
    WALSREC_FAST_PATH      1 (default): the APIs are answered by serving/fast_path.py; 0: by
                           BentoML's routing (same answers, more per-request cost).
    WALSREC_INLINE         1 (default): small requests on the event loop; 0: all in threads.
    WALSREC_SWITCH_INTERVAL  the GIL switch interval in seconds (default 0.001).
    WALSREC_JOIN_WRITES    1 (default): an answer's headers and body in one write
                           (serving/http_protocol.py); 0: two, as uvicorn writes them.
    WALSREC_BALANCE        1 (default): keep-alive connections spread over the workers
                           (serving/balance.py); 0: uvicorn's accept loop.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

# One BLAS thread per worker: a request is a single matrix-vector product, and threads from
# several workers fighting over the cores made p99 several times worse (bench/serve/README.md).
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

# The GIL switch interval, 1 ms instead of Python's 5: a thread building a heavy answer (a
# 1,000-user batch is 50,000 answer items made in Python) keeps the GIL for up to this long
# before the event loop may run, and a small request needs the loop several times. With 5 ms a
# one-user /recommend beside such batches had a p99 76 ms over idle (load 3); with 1 ms, 3-24 ms
# under load and 10 ms on a quiet machine (bench/serve/worst_case.py). WALSREC_SWITCH_INTERVAL
# (seconds) overrides it.
sys.setswitchinterval(float(os.environ.get("WALSREC_SWITCH_INTERVAL", "0.001")))

import bentoml  # noqa: E402
from pydantic import Field  # noqa: E402
from starlette.responses import JSONResponse  # noqa: E402

from serving import balance, http_limits, openapi  # noqa: E402
from serving.encoding import PiecewiseJSONResponse  # noqa: E402
from serving.fast_path import HEAVY_ITEMS, FastPath, request_items  # noqa: E402
from serving.guard import DEFAULT_MAX_BODY_BYTES, OPEN_PATHS, RequestGuard, read_token  # noqa: E402
from serving.metrics import RequestMetrics, metrics_app  # noqa: E402
from serving.recommender import OnlineRecommender, RequestError  # noqa: E402
from serving.rejections import quiet_rejected_requests  # noqa: E402
from serving.schemas import (  # noqa: E402
    MAX_BATCH_USERS,
    MAX_GIVEN_ITEMS,
    MAX_LISTED_ITEMS,
    MAX_SCORED_ITEMS,
    BatchRecommendations,
    BatchTopK,
    Explanation,
    Flag,
    Id,
    ModelInfo,
    Rating,
    Recommendations,
    Scores,
    SimilarItems,
    SimilarUsers,
    TopK,
    Where,
)
from walsrec import native  # noqa: E402
from walsrec.errors import WalsrecError  # noqa: E402
from walsrec.inference.item_table import load_item_table  # noqa: E402
from walsrec.models.recommender import RecommenderModel, file_sha256  # noqa: E402

logger = logging.getLogger("walsrec.serving")

MODEL_TAG = os.environ.get("WALSREC_MODEL_TAG", "walsrec:latest")
try:
    # Checked on import, so `bentoml serve` stops before it starts a worker.
    TOKEN = read_token(os.environ)
except ValueError as exc:
    raise WalsrecError(str(exc)) from None


def _flag(name: str, default: bool) -> bool:
    return os.environ.get(name, "1" if default else "0").strip().lower() in ("1", "true", "yes")


ItemList = list[Id]


DESCRIPTION = (
    "WALS recommendations: top-k (filtered by the item table), new users by fold-in, similar "
    "items and users, re-ranking of a candidate list, scores."
)
ITEM_TABLE_FILE = "item_table.json"  # beside the model's files (serving/packaging.py)


@bentoml.service(
    name="walsrec",
    description=DESCRIPTION,
    http={"host": "127.0.0.1", "port": 3000},
    workers=int(os.environ.get("WALSREC_WORKERS", "2")),
    # The endpoints are sync, so BentoML runs them in a pool of this many threads per worker:
    # NumPy's work stays off the event loop (health checks and rejections are never stuck
    # behind it) and at most this many requests per worker compute at once.
    threads=int(os.environ.get("WALSREC_THREADS", "2")),
    # A log line per request raised p99 by ~25% at c=32 (bench/serve); metrics stay on /metrics.
    logging={"access": {"enabled": _flag("WALSREC_ACCESS_LOG", False)}},
    traffic={"timeout": 30},
    # OpenTelemetry makes five spans per request even when nothing exports them: that was the
    # largest part of BentoML's per-request cost. WALSREC_TRACING=1 keeps them.
    tracing={"excluded_urls": None if _flag("WALSREC_TRACING", False) else [".*"]},
    # BentoML's metrics label requests by raw path, outside our guard: unbounded. Ours replace
    # them (serving/metrics.py), served at /metrics by the guard.
    metrics={"enabled": False, "namespace": "bentoml_service"},
)
class WalsrecService:
    """Loads the model once per worker and answers from memory.

    A model that fails validation (walsrec.models.recommender: checksums, finite factors, indices,
    ids) leaves the worker up but never ready: /readyz answers 503 and the log has one line naming
    the model version and the file.
    """

    # Declared so that `bentoml build` packs (and pins) this model into the Bento.
    bento_model = bentoml.models.BentoModel(MODEL_TAG)

    def __init__(self) -> None:
        self.engine: OnlineRecommender | None = None
        _INSTANCES.append(self)  # the fast path's way to this worker's instance
        stored = _packaged_model()
        self.model_tag = str(stored.tag)
        self.labels = dict(stored.info.labels)
        # Build (first start, about a second) or load the ranking kernels before the first
        # request; without a compiler ranking uses NumPy, logged once here.
        native.kernels()
        try:
            model = RecommenderModel.load(stored.path)
            self.engine = OnlineRecommender(model, _item_fields(stored, model.n_items))
        except WalsrecError as exc:
            version = self.labels.get("zenml_version", "?")
            logger.error(
                "not serving model %s (ZenML version %s): %s", self.model_tag, version, exc
            )

    def __is_ready__(self) -> bool:
        return self.engine is not None

    @bentoml.api
    def recommend(
        self,
        user_id: Id,
        k: TopK = 10,
        exclude_seen: Flag = True,
        allow_items: ItemList | None = Field(None, max_length=MAX_LISTED_ITEMS),
        deny_items: ItemList | None = Field(None, max_length=MAX_LISTED_ITEMS),
        where: Where | None = None,
    ) -> Recommendations:
        """Top-k items for a user; an unknown user gets the most popular items, flagged
        `fallback`. `allow_items` restricts the candidates, `deny_items` removes some, `where`
        keeps the items whose item-table fields match."""
        return self._answer(
            Recommendations, "recommend", user_id, k, exclude_seen, allow_items, deny_items, where
        )

    @bentoml.api
    def recommend_batch(
        self,
        user_ids: list[Id] = Field(min_length=1, max_length=MAX_BATCH_USERS),
        k: BatchTopK = 10,
        exclude_seen: Flag = True,
        where: Where | None = None,
    ) -> BatchRecommendations:
        """Top-k for many users in one call (same rules as /recommend), scored as one matrix
        product per block of users."""
        return self._answer(
            BatchRecommendations, "recommend_batch", user_ids, k, exclude_seen, where
        )

    @bentoml.api
    def recommend_for_items(
        self,
        item_ids: list[Id] = Field(min_length=1, max_length=MAX_GIVEN_ITEMS),
        ratings: list[Rating] | None = Field(None, max_length=MAX_GIVEN_ITEMS),
        k: TopK = 10,
        exclude_given: Flag = True,
        allow_items: ItemList | None = Field(None, max_length=MAX_LISTED_ITEMS),
        deny_items: ItemList | None = Field(None, max_length=MAX_LISTED_ITEMS),
        where: Where | None = None,
    ) -> Recommendations:
        """Top-k for a new user described by items (and optional ratings, one per item),
        folded into the model with the training's least-squares solve. Unknown items are
        listed back in `unknown_items`."""
        return self._answer(
            Recommendations,
            "recommend_for_items",
            item_ids,
            ratings,
            k,
            exclude_given,
            allow_items,
            deny_items,
            where,
        )

    @bentoml.api
    def similar_items(self, item_id: Id, k: TopK = 10) -> SimilarItems:
        """The k items closest to `item_id` (cosine similarity of the item factors)."""
        return self._answer(SimilarItems, "similar_items", item_id, k)

    @bentoml.api
    def similar_users(self, user_id: Id, k: TopK = 10) -> SimilarUsers:
        """The k users closest to `user_id` (cosine similarity of the user factors)."""
        return self._answer(SimilarUsers, "similar_users", user_id, k)

    @bentoml.api
    def explain(self, user_id: Id, item_id: Id, k: TopK = 10) -> Explanation:
        """Which of the user's items drive their score of `item_id`: the k largest
        contributions (they and `non_item_terms` sum to `score`)."""
        return self._answer(Explanation, "explain", user_id, item_id, k)

    @bentoml.api
    def rank(
        self,
        user_id: Id,
        item_ids: list[Id] = Field(min_length=1, max_length=MAX_SCORED_ITEMS),
        exclude_seen: Flag = False,
        where: Where | None = None,
    ) -> Recommendations:
        """Re-rank the caller's candidate items for a user, best first (seen items kept unless
        `exclude_seen`; an unknown user gets them by popularity, flagged `fallback`)."""
        return self._answer(Recommendations, "rank", user_id, item_ids, exclude_seen, where)

    @bentoml.api
    def score(
        self,
        user_id: Id,
        item_ids: list[Id] = Field(min_length=1, max_length=MAX_SCORED_ITEMS),
    ) -> Scores:
        """Predicted scores of a user for items (popularity counts for an unknown user)."""
        return self._answer(Scores, "score", user_id, item_ids)

    @bentoml.api
    def model_info(self) -> ModelInfo:
        """The served model: ZenML model version, training time, metrics and sizes."""
        if self.engine is None:
            return _not_ready()
        return ModelInfo(**self.engine.info(self.model_tag, self.labels))

    def _answer(self, model_type, method: str, *args):
        """The engine's answer as JSON. `model_type` (the declared answer, which the OpenAPI
        document shows) is not rebuilt from it: validating our own 50,000-item answer took
        longer than computing it. tests/serving/test_fast_path.py checks every answer is
        exactly `model_type`'s serialization."""
        if self.engine is None:
            return _not_ready()
        try:
            return PiecewiseJSONResponse(getattr(self.engine, method)(*args))
        except RequestError as error:
            return JSONResponse(
                {"error": str(error), "field": error.field}, status_code=error.status
            )


def _not_ready() -> JSONResponse:
    return JSONResponse(
        {"error": "model: the model failed validation at start-up (see the server log)"},
        status_code=503,
    )


def _item_fields(stored: bentoml.Model, n_items: int) -> dict | None:
    """The item table packaged beside the model (None without one), its checksum verified."""
    path = Path(stored.path, ITEM_TABLE_FILE)
    expected = stored.info.metadata.get("item_table_sha256")
    if expected is None:
        return None
    if not path.is_file() or file_sha256(path) != expected:
        raise WalsrecError(f"{ITEM_TABLE_FILE}: missing, or its SHA-256 does not match")
    return load_item_table(path, n_items)


def _packaged_model() -> bentoml.Model:
    """The model to serve: the one pinned in the Bento when serving a Bento, else MODEL_TAG.

    A Bento records the exact model version it was built with; reading it from there keeps
    `bentoml serve <bento>` on that version even after newer models enter the store.
    """
    tag = MODEL_TAG
    bento = getattr(WalsrecService, "bento", None)
    if bento is not None:
        info = next(s for s in bento.info.services if s.name == WalsrecService.name)
        if info.models:
            tag = str(info.models[0].tag)
    try:
        return bentoml.models.get(tag)
    except bentoml.exceptions.NotFound as exc:
        raise WalsrecError(
            f"BentoML model {tag} is not in the BentoML model store: package a model first "
            "(python run.py deploy) or set WALSREC_MODEL_TAG to one that exists"
        ) from exc


API_PATHS = tuple(api.route for api in WalsrecService.apis.values())
_INSTANCES: list[WalsrecService] = []
THREADS = WalsrecService.config.get("threads", 1)
# Requests computed on the event loop (serving/fast_path.py): one user's scores over at most
# INLINE_MAX_CATALOGUE items (a matrix-vector product of 131,072 x 64 is about 1 ms on one core)
# or a scored list of at most HEAVY_ITEMS items. Anything else goes to the endpoint threads.
INLINE_ROUTES = frozenset({"/recommend", "/rank", "/score", "/model_info"})
INLINE_MAX_CATALOGUE = 1 << 17


def _inline(path: str, arguments: dict) -> bool:
    if path not in INLINE_ROUTES or request_items(arguments) > HEAVY_ITEMS:
        return False
    engine = _INSTANCES[-1].engine if _INSTANCES else None
    return path != "/recommend" or (engine is not None and engine.n_items <= INLINE_MAX_CATALOGUE)


FAST_PATH = (
    FastPath(
        WalsrecService,
        lambda: _INSTANCES[-1] if _INSTANCES else None,
        THREADS,
        inline=_inline if _flag("WALSREC_INLINE", True) else None,
    )
    if _flag("WALSREC_FAST_PATH", True)
    else None
)

_OWN_ROUTES = {
    "/docs.json": openapi.document_app(
        WalsrecService, _packaged_model, secured=TOKEN is not None, description=DESCRIPTION
    ),
}
_METRICS = None
if _flag("WALSREC_METRICS", True):
    _OWN_ROUTES["/metrics"] = metrics_app
    _METRICS = RequestMetrics([*API_PATHS, *OPEN_PATHS, *_OWN_ROUTES, "/"])

quiet_rejected_requests()
http_limits.install()
balance.install()
# The guard's options; the app factory below reads them each time it builds an app (the tests
# change them per app).
GUARD_OPTIONS = {
    "token": TOKEN,
    "max_body_bytes": int(os.environ.get("WALSREC_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES)),
    "metrics": _METRICS,
    "own_routes": _OWN_ROUTES,
    "json_paths": API_PATHS,
    "fast_path": FAST_PATH,
}


class _GuardedService(type(WalsrecService)):
    """BentoML's service with the guard outermost: around the whole app BentoML builds, not
    inside it (where `add_asgi_middleware` puts it, behind BentoML's tracing, timeout and
    error middlewares, about 50 us per request that the fast path never needed). A rejected
    request therefore costs nothing of BentoML's, and the fast path's answers skip its stack;
    everything the guard hands on (health, readiness, OpenAPI UI, lifespan) gets all of it."""

    __slots__ = ()  # the same layout as bentoml's attrs class, so the class can be swapped

    def to_asgi(self, is_main: bool = True):
        return RequestGuard(super().to_asgi(is_main), **GUARD_OPTIONS)


WalsrecService.__class__ = _GuardedService
