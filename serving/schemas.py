"""Request field types and response models of the HTTP API (pydantic; they make the OpenAPI).

Limits keep one request cheap: the body cap (serving/guard.py) bounds the bytes, these bound the
work. A request over a limit gets a 400 naming the field. Inputs are strict: a JSON `true` is not
an integer, `"10"` is not a number (ids alone accept JSON integers, read as strings).
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, Field, WithJsonSchema

MAX_ID_LENGTH = 256
MAX_INTEGER_ID = 10**18  # JSON integers as ids: |id| at most this
MAX_BATCH_USERS = 1_000
MAX_GIVEN_ITEMS = 1_000
MAX_LISTED_ITEMS = 10_000
MAX_SCORED_ITEMS = 10_000
# Items in one answer, summed over its users (users x k): bounds the answer's bytes (about 70 per
# item) and the work of building it, whatever the catalog size (MovieLens-20M has 26,744 items).
# Field limits keep to it: k <= MAX_ANSWER_ITEMS, and k <= MAX_BATCH_K for a batch of up to
# MAX_BATCH_USERS users, so the OpenAPI schema states the whole rule.
MAX_ANSWER_ITEMS = 50_000
MAX_BATCH_K = MAX_ANSWER_ITEMS // MAX_BATCH_USERS
# Ratings and counts above this are refused: far beyond any real rating or play count, and the
# fold-in's least-squares solve stays well conditioned below it (1e20 once broke its Cholesky).
MAX_RATING = 1e6
# `where` conditions on the item table: fields per request and values per field.
MAX_WHERE_FIELDS = 16
MAX_WHERE_VALUES = 100


def _id_as_text(value: Any) -> Any:
    """Ids are strings; JSON integers (ids like 42) are accepted and read as "42"."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) <= MAX_INTEGER_ID:
        return str(value)
    return value  # anything else is left to the strict string check, which refuses it


Id = Annotated[
    str,
    BeforeValidator(_id_as_text),
    Field(
        min_length=1,
        max_length=MAX_ID_LENGTH,
        strict=True,
        description="an original user or item id",
    ),
    WithJsonSchema(
        {
            "anyOf": [
                {"type": "string", "minLength": 1, "maxLength": MAX_ID_LENGTH},
                {"type": "integer", "minimum": -MAX_INTEGER_ID, "maximum": MAX_INTEGER_ID},
            ],
            "description": "an original user or item id (a JSON integer is read as its digits)",
        }
    ),
]
TopK = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_ANSWER_ITEMS,
        strict=True,
        description=f"items to return: at most the number of items and {MAX_ANSWER_ITEMS}",
    ),
]
BatchTopK = Annotated[
    int,
    Field(
        ge=1,
        le=MAX_BATCH_K,
        strict=True,
        description=f"items to return per user: at most the number of items and {MAX_BATCH_K} "
        f"(users x k stays within {MAX_ANSWER_ITEMS})",
    ),
]
Flag = Annotated[bool, Field(strict=True)]
# A field value in `where`: a JSON string, number or boolean, strictly (true is not 1).
FieldValue = Annotated[
    Annotated[str, Field(strict=True, max_length=MAX_ID_LENGTH)]
    | Annotated[int, Field(strict=True)]
    | Annotated[float, Field(strict=True, allow_inf_nan=False)]
    | Annotated[bool, Field(strict=True)],
    Field(union_mode="left_to_right"),
]
WhereValue = Annotated[
    FieldValue | Annotated[list[FieldValue], Field(min_length=1, max_length=MAX_WHERE_VALUES)],
    Field(union_mode="left_to_right"),
]
Where = Annotated[
    dict[Annotated[str, Field(min_length=1, max_length=MAX_ID_LENGTH)], WhereValue],
    Field(
        max_length=MAX_WHERE_FIELDS,
        description="item-table conditions: {field: value or [values]}; an item is kept when "
        "every field equals one of its values (the fields: /model_info's item_fields)",
    ),
]
Rating = Annotated[
    float,
    Field(ge=0, le=MAX_RATING, allow_inf_nan=False, strict=True, description="rating or count"),
]


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


class ScoredUser(BaseModel):
    user_id: str
    score: float


class SimilarUsers(BaseModel):
    user_id: str
    users: list[ScoredUser]


class Contribution(BaseModel):
    item_id: str
    contribution: float
    title: str | None = None


class Explanation(BaseModel):
    """`score` = the sum of every contribution (the user's training items) + `non_item_terms`;
    `contributions` lists the k largest."""

    user_id: str
    item_id: str
    title: str | None = None
    score: float
    non_item_terms: float
    contributions: list[Contribution]


class ItemScore(BaseModel):
    item_id: str
    score: float


class Scores(BaseModel):
    """Predicted scores; with `fallback` true (unknown user) they are popularity counts."""

    user_id: str
    fallback: bool
    scores: list[ItemScore]
    unknown_items: list[str]


class ValidationIssue(BaseModel):
    """One field a request got wrong (pydantic's error, without the input)."""

    loc: list[str | int]
    msg: str
    type: str


class ErrorResponse(BaseModel):
    """Every 4xx: `error` says what is wrong; `field` (rules needing the model, or the
    guard's) or `detail` (schema validation) names the field at fault."""

    error: str
    field: str | None = None
    detail: list[ValidationIssue] | None = None


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
    item_fields: list[str] = Field(
        default_factory=list, description="item-table fields `where` can filter on"
    )
