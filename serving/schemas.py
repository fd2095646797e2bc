"""Request field types and response models of the HTTP API (pydantic; they make the OpenAPI).

Limits keep one request cheap: the body cap (serving/guard.py) bounds the bytes, these bound the
work. A request over a limit gets a 400 naming the field.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field

MAX_ID_LENGTH = 256
MAX_BATCH_USERS = 1_000
MAX_GIVEN_ITEMS = 1_000
MAX_LISTED_ITEMS = 10_000
MAX_SCORED_ITEMS = 10_000
MAX_K = 100_000


def _id_as_text(value: Any) -> Any:
    """Ids are strings; JSON integers (ids like 42) are accepted and read as "42"."""
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return value


Id = Annotated[
    str,
    BeforeValidator(_id_as_text),
    Field(min_length=1, max_length=MAX_ID_LENGTH, description="an original user or item id"),
]
TopK = Annotated[
    int,
    Field(ge=1, le=MAX_K, description="items to return, at most the number of items"),
]
Rating = Annotated[float, Field(ge=0, allow_inf_nan=False)]


class ScoredItem(BaseModel):
    item_id: str
    score: float
    title: str | None = None


class Recommendations(BaseModel):
    """Top-k for one user. `fallback` is true when the user is unknown (popularity ranking)."""

    user_id: str | None = None
    fallback: bool = False
    items: list[ScoredItem]
    unknown_items: list[str] = Field(
        default_factory=list, description="ids in the request the model does not know"
    )


class BatchRecommendations(BaseModel):
    results: list[Recommendations]


class SimilarItems(BaseModel):
    item_id: str
    items: list[ScoredItem]


class ItemScore(BaseModel):
    item_id: str
    score: float


class Scores(BaseModel):
    """Predicted scores; with `fallback` true (unknown user) they are popularity counts."""

    user_id: str
    fallback: bool
    scores: list[ItemScore]
    unknown_items: list[str]


class ModelInfo(BaseModel):
    bento_model: str
    model_name: str
    model_version: str
    trained_at: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    n_users: int
    n_items: int
    n_factors: int
    has_biases: bool
