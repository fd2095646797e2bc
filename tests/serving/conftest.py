"""A small synthetic model in the (temporary) BentoML model store, and the service in-process."""

from __future__ import annotations

import os

import numpy as np
import pytest
import scipy.sparse as sp

from tests.pipelines.conftest import train_config  # noqa: F401  (shared fixture)
from walsrec.model import RecommenderModel

N_USERS, N_ITEMS, N_FACTORS = 40, 60, 8

# Each in-process app would register BentoML's Prometheus metrics again in the one registry of
# this process (DuplicateTimeseries); the real-server test keeps them on.
os.environ["WALSREC_METRICS"] = "0"


def synthetic_model(seed: int = 0) -> RecommenderModel:
    """Random factors; user "u0" has seen items i0..i4; item i7 is the most popular."""
    rng = np.random.default_rng(seed)
    seen = sp.random(N_USERS, N_ITEMS, density=0.1, random_state=seed, format="lil")
    seen[0, :] = 0
    seen[0, :5] = 1.0
    seen = sp.csr_matrix(seen, dtype=np.float32)
    seen.data[:] = 1.0
    popularity = np.asarray((seen != 0).sum(axis=0)).ravel().astype(np.float64)
    popularity[7] = popularity.max() + 10
    return RecommenderModel(
        user_factors=rng.normal(0, 1, (N_USERS, N_FACTORS)).astype(np.float32),
        item_factors=rng.normal(0, 1, (N_ITEMS, N_FACTORS)).astype(np.float32),
        user_bias=None,
        item_bias=None,
        global_mean=0.0,
        user_ids=np.array([f"u{i}" for i in range(N_USERS)], dtype=object),
        item_ids=np.array([f"i{i}" for i in range(N_ITEMS)], dtype=object),
        seen=seen,
        item_popularity=popularity,
        item_titles={"i1": "Item One"},
        config={"n_factors": N_FACTORS, "regularization": 0.5, "alpha": 2.0},
        metadata={"trained_at": "2024-01-01T00:00:00+00:00"},
    )


@pytest.fixture(scope="session")
def model() -> RecommenderModel:
    return synthetic_model()


@pytest.fixture(scope="session")
def packaged_model(model: RecommenderModel) -> str:
    """The synthetic model as the newest `walsrec` in the BentoML model store."""
    from serving.packaging import save_to_model_store

    return save_to_model_store(
        model,
        model_name="walsrec",
        model_version="7",
        metrics={"wals": {"ndcg@10": 0.25}, "popularity": {"ndcg@10": 0.1}},
    )


@pytest.fixture(scope="session")
def service(packaged_model: str):
    """The service class, serving exactly the synthetic model (whatever else is in the store)."""
    os.environ["WALSREC_MODEL_TAG"] = packaged_model
    import serving.service

    assert packaged_model == serving.service.MODEL_TAG, "serving.service was imported too early"
    yield serving.service.WalsrecService
    os.environ.pop("WALSREC_MODEL_TAG", None)  # later subprocesses pick their own model


def guard_options(service) -> dict:
    """The RequestGuard's options registered on the service (tests change them per app)."""
    from serving.guard import RequestGuard

    return next(options for cls, options in service.middlewares if cls is RequestGuard)


@pytest.fixture
def client(service):
    from starlette.testclient import TestClient

    with TestClient(service.to_asgi()) as test_client:
        yield test_client
