"""Item metadata for filtering recommendations: a category, an availability flag, a price band.

A user's catalogue table (CSV, TSV or Parquet, one row per item, an `item_id` column and any
others) is read at packaging time (`python run.py deploy --item-metadata items.csv`) and stored
beside the served model as one plain JSON file, aligned with the model's items:

    {"format": "walsrec-item-table", "format_version": 1,
     "fields": {"category": ["shoes", null, ...], "in_stock": [true, false, ...]}}

one value per model item, in the model's item order (null where the table has no value or no
row for the item). The service filters on it (`where: {"category": ["shoes", "bags"]}`), so it
needs neither pandas nor the table's file format. Values are strings, integers, floats or
booleans; anything else is refused with the file, line and column. Table rows for items the
model does not know are counted and reported (the catalogue is usually larger than what was
interacted with), never an error; a duplicated item id is an error naming both lines.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from walsrec.errors import DataError

FORMAT_NAME = "walsrec-item-table"
FORMAT_VERSION = 1
ID_COLUMN = "item_id"
MAX_FIELDS = 64
MAX_VALUE_LENGTH = 256
Value = str | int | float | bool | None


def read_item_table(path: str | Path, item_ids: list[str] | np.ndarray) -> tuple[dict, int]:
    """The table at `path` as the JSON-ready item table for a model with `item_ids`.

    Returns:
        (table, number of table rows whose item the model does not know).

    Raises:
        DataError: the file is missing or unreadable, lacks `item_id`, has a duplicated id, too
            many columns, or a value that is not a string, number or boolean.
    """
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: item metadata file not found")
    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            separator = "\t" if suffix in (".tsv", ".tab") else ","
            frame = pd.read_csv(path, sep=separator, dtype={ID_COLUMN: str}, keep_default_na=True)
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(f"{path}: cannot read the item metadata table: {exc}") from None
    if ID_COLUMN not in frame.columns:
        raise DataError(
            f"{path}: no {ID_COLUMN!r} column (columns: {', '.join(map(str, frame.columns))})"
        )
    fields = [str(column) for column in frame.columns if column != ID_COLUMN]
    if not fields:
        raise DataError(f"{path}: no column besides {ID_COLUMN!r} to filter on")
    if len(fields) > MAX_FIELDS:
        raise DataError(f"{path}: {len(fields)} columns; at most {MAX_FIELDS} can be filtered on")
    line_offset = 1 if suffix == ".parquet" else 2  # file line of row 0 (after the header)
    what = "row" if suffix == ".parquet" else "line"
    ids = frame[ID_COLUMN].astype(str).str.strip().tolist()
    first_row: dict[str, int] = {}
    for row, item in enumerate(ids):
        if item in first_row:
            raise DataError(
                f"{path}: {what} {row + line_offset}: item_id {item!r} repeats "
                f"{what} {first_row[item] + line_offset}"
            )
        first_row[item] = row
    position = {str(item): index for index, item in enumerate(item_ids)}
    rows = np.array([position.get(item, -1) for item in ids], dtype=np.int64)
    unknown = int((rows < 0).sum())
    table: dict[str, list[Value]] = {}
    for name in fields:
        column: list[Value] = [None] * len(position)
        for row, value in enumerate(frame[name].tolist()):
            if rows[row] >= 0:
                column[rows[row]] = _plain(value, path, f"{what} {row + line_offset}", name)
        table[name] = column
    return {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "fields": table}, unknown


def write_item_table(table: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(table, separators=(",", ":"), allow_nan=False))


def load_item_table(path: str | Path, n_items: int) -> dict[str, list[Value]]:
    """The fields of a stored item table, checked against a model with `n_items` items."""
    path = Path(path)
    try:
        table = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: cannot read the item table: {exc}") from None
    if not isinstance(table, dict) or table.get("format") != FORMAT_NAME:
        raise DataError(f"{path}: not a {FORMAT_NAME} file")
    if table.get("format_version") != FORMAT_VERSION:
        raise DataError(
            f"{path}: format_version {table.get('format_version')!r}; "
            f"this walsrec reads {FORMAT_VERSION}"
        )
    fields = table.get("fields")
    if not isinstance(fields, dict) or not all(
        isinstance(values, list) and len(values) == n_items for values in fields.values()
    ):
        raise DataError(f"{path}: every field must list one value per model item ({n_items})")
    return fields


class ItemFilter:
    """Boolean item masks for `where` conditions over an item table's fields.

    A condition {field: value or [values]} keeps the items whose `field` equals one of the
    values; several fields must all hold. Values compare by JSON type and value (the string
    "1" is not the integer 1; 1 and 1.0 are equal, as in JSON).
    """

    def __init__(self, fields: dict[str, list[Value]], n_items: int) -> None:
        self.n_items = n_items
        # field -> value -> item indices; built once, so a request costs O(matched items).
        self.index: dict[str, dict[tuple[str, Value], np.ndarray]] = {}
        for name, values in fields.items():
            groups: dict[tuple[str, Value], list[int]] = {}
            for item, value in enumerate(values):
                if value is not None:
                    groups.setdefault(_key(value), []).append(item)
            self.index[name] = {
                key: np.array(items, dtype=np.int64) for key, items in groups.items()
            }

    @property
    def fields(self) -> list[str]:
        return sorted(self.index)

    def mask(self, where: dict[str, Any]) -> np.ndarray:
        """bool [n_items]; KeyError naming the first field the table does not have."""
        mask = np.ones(self.n_items, dtype=bool)
        for name, wanted in where.items():
            if name not in self.index:
                raise KeyError(name)
            values = wanted if isinstance(wanted, list) else [wanted]
            matched = np.zeros(self.n_items, dtype=bool)
            for value in values:
                items = self.index[name].get(_key(value))
                if items is not None:
                    matched[items] = True
            mask &= matched
        return mask


def _key(value: Value) -> tuple[str, Value]:
    """Equality key with JSON's types: booleans apart from numbers, 1 equal to 1.0."""
    if isinstance(value, bool):
        return ("bool", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    return ("string", value)


def _plain(value: Any, path: Path, where: str, column: str) -> Value:
    """A table cell as a JSON scalar (None for a missing value)."""
    if value is None:
        return None
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        if math.isinf(value):
            raise DataError(f"{path}: {where}: column {column!r}: infinite value")
        return value
    if isinstance(value, str):
        if len(value) > MAX_VALUE_LENGTH:
            raise DataError(
                f"{path}: {where}: column {column!r}: value longer than {MAX_VALUE_LENGTH}"
            )
        return value
    raise DataError(
        f"{path}: {where}: column {column!r}: {type(value).__name__} values cannot be "
        "filtered on (use strings, numbers or booleans)"
    )
