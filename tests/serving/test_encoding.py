"""Piecewise JSON (serving/encoding.py): the same bytes as Starlette's JSONResponse."""

from __future__ import annotations

import json
import math

import pytest
from starlette.responses import JSONResponse

from serving.encoding import PIECE, PiecewiseJSONResponse, dumps_piecewise

ITEMS = [{"item_id": f"i{i}", "score": i / 7, "title": "é" if i % 3 else None} for i in range(999)]
CASES = [
    {},
    [],
    "ü",
    None,
    {
        "results": [
            {"user_id": f"u{u}", "items": ITEMS[:50], "unknown_items": []} for u in range(600)
        ]
    },
    {"user_id": "1", "fallback": False, "items": ITEMS, "unknown_items": ["x"] * (PIECE * 3 + 1)},
    {"detail": [{"loc": ["body", "k"], "msg": "bad", "ctx": {}}], "error": "1 error"},
    [[1, 2]] * (PIECE + 5),
    [1, [2, {"a": [3, []]}]],
    {"a": {1: 2}, "b": [{3: [4]}]},  # non-string keys: json's coercion
    {"nested": [[{"deep": list(range(PIECE * 2))}]]},
]


@pytest.mark.parametrize("value", CASES, ids=range(len(CASES)))
def test_piecewise_json_is_byte_identical_to_starlettes(value) -> None:
    assert dumps_piecewise(value) == json.dumps(
        value, ensure_ascii=False, allow_nan=False, separators=(",", ":")
    )
    assert PiecewiseJSONResponse(value).body == JSONResponse(value).body


@pytest.mark.parametrize("bad", [math.nan, math.inf])
def test_non_finite_numbers_are_refused_as_by_starlette(bad) -> None:
    for value in ([bad], [0.0] * PIECE * 2 + [bad], {"items": [{"score": bad}] * (PIECE + 1)}):
        with pytest.raises(ValueError, match="Out of range float"):
            dumps_piecewise(value)
