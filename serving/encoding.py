"""JSON answers encoded piece by piece, so a large answer never holds the GIL for long.

`json.dumps` in C holds the GIL for the whole document: a 1,000-user batch at k = 50 (about
3 MB) took one worker's event loop away for tens of milliseconds, and every small request of
that worker waited (bench/serve/worst_case.py). `dumps_piecewise` writes the same bytes as
Starlette's `JSONResponse` (compact separators, UTF-8, NaN refused) but encodes long lists in
slices of PIECE elements, between which the interpreter may switch threads.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.responses import JSONResponse

__all__ = ["PIECE", "PiecewiseJSONResponse", "dumps_piecewise"]

PIECE = 256
_encode = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode


def dumps_piecewise(value: Any) -> str:
    """`json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))`, with
    nested containers encoded one by one and long lists of flat elements (scalars, or dicts and
    lists of scalars, such as an answer's items) in slices of PIECE."""
    if isinstance(value, dict):
        if _flat(value):
            return _encode(value)
        parts = []
        for key, item in value.items():
            if not isinstance(key, str):
                return _encode(value)  # non-string keys: json's own coercion rules
            parts.append(f"{_encode(key)}:{dumps_piecewise(item)}")
        return "{" + ",".join(parts) + "}"
    if isinstance(value, list):
        if not all(_flat(item) for item in value):
            return "[" + ",".join(dumps_piecewise(item) for item in value) + "]"
        if len(value) > PIECE:
            pieces = (
                _encode(value[start : start + PIECE])[1:-1] for start in range(0, len(value), PIECE)
            )
            return "[" + ",".join(pieces) + "]"
    return _encode(value)


def _flat(value: Any) -> bool:
    """A scalar, or a dict or list holding only scalars."""
    if isinstance(value, dict):
        return not any(isinstance(item, dict | list) for item in value.values())
    if isinstance(value, list):
        return not any(isinstance(item, dict | list) for item in value)
    return True


class PiecewiseJSONResponse(JSONResponse):
    """Starlette's JSONResponse, rendered by `dumps_piecewise` (the same bytes)."""

    def render(self, content: Any) -> bytes:
        return dumps_piecewise(content).encode("utf-8")
