"""Reading a catalogue table into the item table the service filters on."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from walsrec.errors import DataError
from walsrec.inference.item_table import (
    ItemFilter,
    load_item_table,
    read_item_table,
    write_item_table,
)

ITEMS = ["a", "b", "c", "d"]


def test_csv_columns_align_with_the_models_items(tmp_path) -> None:
    path = tmp_path / "items.csv"
    path.write_text(
        "item_id,category,in_stock,price\n"
        "c,shoes,true,9.5\n"
        "a,bags,false,\n"
        "zzz,hats,true,1\n"  # not in the model: counted, not stored
        "b,,true,3\n"
    )
    table, unknown = read_item_table(path, ITEMS)
    assert unknown == 1
    assert table["fields"] == {
        "category": ["bags", None, "shoes", None],
        "in_stock": [False, True, True, None],
        "price": [None, 3.0, 9.5, None],
    }
    stored = tmp_path / "item_table.json"
    write_item_table(table, stored)
    fields = load_item_table(stored, len(ITEMS))
    assert ItemFilter(fields, 4).mask({"in_stock": True, "price": [3, 9.5]}).tolist() == [
        False, True, True, False,
    ]  # fmt: skip


def test_parquet_with_integer_ids(tmp_path) -> None:
    path = tmp_path / "items.parquet"
    pd.DataFrame({"item_id": [2, 1], "genre": ["x", "y"]}).to_parquet(path)
    table, unknown = read_item_table(path, ["1", "2", "3"])
    assert unknown == 0 and table["fields"]["genre"] == ["y", "x", None]


@pytest.mark.parametrize(
    "text, message",
    [
        ("id,category\na,x\n", "no 'item_id' column"),
        ("item_id\na\n", "no column besides"),
        ("item_id,category\na,x\nb,y\na,z\n", "line 4: item_id 'a' repeats line 2"),
    ],
)
def test_bad_tables_name_the_file_and_the_place(tmp_path, text, message) -> None:
    path = tmp_path / "items.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as error:
        read_item_table(path, ITEMS)
    assert str(path) in str(error.value)


def test_unfilterable_values_are_refused_naming_row_and_column(tmp_path) -> None:
    path = tmp_path / "items.parquet"
    pd.DataFrame({"item_id": ["a", "b"], "tags": [["x"], ["y", "z"]]}).to_parquet(path)
    with pytest.raises(DataError, match=r"row 1: column 'tags': .* cannot be filtered on"):
        read_item_table(path, ITEMS)


def test_a_stored_table_of_another_model_is_refused(tmp_path) -> None:
    path = tmp_path / "item_table.json"
    path.write_text(
        json.dumps({"format": "walsrec-item-table", "format_version": 1, "fields": {"c": [1]}})
    )
    with pytest.raises(DataError, match="one value per model item"):
        load_item_table(path, 4)
    with pytest.raises(DataError, match="not found"):
        read_item_table(tmp_path / "missing.csv", ITEMS)
