"""The baseline: a minimal Starlette app doing the same top-k as the service (no BentoML).

    WALSREC_MODEL_DIR=/path/to/model PYTHONPATH=. \
        uvicorn bare_app:app --app-dir bench/serve --workers 2

It runs the service's own `OnlineRecommender.recommend`, so the benchmark's ratio is the cost of
the serving framework (parsing, validation, middleware, serialization), not of the model.
"""

from __future__ import annotations

import json
import os

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import Response  # noqa: E402
from starlette.routing import Route  # noqa: E402

from serving.recommender import OnlineRecommender  # noqa: E402
from walsrec.models.recommender import RecommenderModel  # noqa: E402

engine = OnlineRecommender(RecommenderModel.load(os.environ["WALSREC_MODEL_DIR"]))


async def recommend(request: Request) -> Response:
    body = json.loads(await request.body())
    answer = engine.recommend(str(body["user_id"]), int(body.get("k", 10)))
    return Response(json.dumps(answer), media_type="application/json")


async def ready(request: Request) -> Response:
    return Response("\n")


app = Starlette(routes=[Route("/recommend", recommend, methods=["POST"]), Route("/readyz", ready)])
