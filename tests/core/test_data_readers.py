"""Readers and validation: formats, headers, every rejection reason, strict mode, duplicates."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from walsrec.data import ColumnSpec, ValidationOptions, load_interactions
from walsrec.errors import ConfigError, DataError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def assert_nothing_lost(report) -> None:
    assert report.rows_read == (
        report.rows_kept + sum(report.rejected.values()) + report.duplicates_dropped
    )


BAD_CSV = (
    "user_id,item_id,rating,timestamp\n"  # line 1
    "u1,i1,4,100\n"  # 2 kept
    ",i2,4,100\n"  # 3 missing user id
    "u2,,4,100\n"  # 4 missing item id
    "u3,i3,abc,100\n"  # 5 unparsable rating
    "u3,i4,nan,100\n"  # 6 non-finite rating
    "u3,i5,inf,100\n"  # 7 non-finite rating
    "u3,i6,9,100\n"  # 8 out of range
    "u3,i7,4,-5\n"  # 9 negative timestamp
    "u3,i8,4,yesterday\n"  # 10 unparsable timestamp
    "u3,i9,4\n"  # 11 wrong number of fields
    "u4,i1,3,200\n"  # 12 kept
)


def test_every_rejection_reason_is_counted_with_line_and_field(tmp_path):
    path = write(tmp_path / "bad.csv", BAD_CSV)
    result = load_interactions(
        path, options=ValidationOptions(rating_min=1, rating_max=5, max_examples=20)
    )
    report = result.report
    assert report.rejected == {
        "wrong number of fields": 1,
        "missing user id": 1,
        "missing item id": 1,
        "unparsable rating": 1,
        "non-finite rating": 2,
        "rating out of range": 1,
        "unparsable timestamp": 1,
        "negative timestamp": 1,
    }
    assert report.rows_read == 11
    assert report.rows_kept == 2
    assert_nothing_lost(report)
    located = {(example.line, example.field, example.reason) for example in report.examples}
    assert (3, "user_id", "missing user id") in located
    assert (4, "item_id", "missing item id") in located
    assert (5, "rating", "unparsable rating") in located
    assert (8, "rating", "rating out of range") in located
    assert (9, "timestamp", "negative timestamp") in located
    assert (10, "timestamp", "unparsable timestamp") in located
    assert [example.line for example in report.examples] == sorted(
        example.line for example in report.examples
    )
    summary = report.summary()
    assert f"{path}:5: rating: unparsable rating ('abc')" in summary
    assert f"{path}:11: wrong number of fields (expected 4, found 3) ('u3,i9,4')" in summary
    assert list(result.frame["user_id"]) == ["u1", "u4"]
    json.dumps(report.to_dict())


def test_examples_are_limited_and_in_file_order(tmp_path):
    path = write(tmp_path / "bad.csv", BAD_CSV)
    report = load_interactions(path, options=ValidationOptions(max_examples=2)).report
    assert [example.line for example in report.examples] == [3, 4]


def test_range_is_not_checked_unless_set(tmp_path):
    path = write(tmp_path / "r.csv", "user_id,item_id,rating\n1,1,9\n1,2,-3\n")
    result = load_interactions(path, columns=ColumnSpec(timestamp=None))
    assert result.report.rejected == {}
    assert result.frame["rating"].tolist() == [9.0, -3.0]


def test_strict_mode_raises_on_first_bad_row(tmp_path):
    path = write(tmp_path / "bad.csv", BAD_CSV)
    with pytest.raises(DataError, match=r"bad\.csv:3: user_id: missing user id"):
        load_interactions(path, options=ValidationOptions(strict=True))


def test_strict_mode_reports_wrong_field_count_when_it_comes_first(tmp_path):
    path = write(tmp_path / "bad.tsv", "1\t2\t3\n4\t5\n6\tx\t7\n")
    with pytest.raises(DataError, match=r"bad\.tsv:2: wrong number of fields \(expected 3"):
        load_interactions(path, options=ValidationOptions(strict=True))


def test_strict_mode_rejects_extra_columns(tmp_path):
    path = write(tmp_path / "x.csv", "user_id,item_id,rating,genre\n1,2,3,drama\n")
    with pytest.raises(DataError, match="unexpected columns genre"):
        load_interactions(
            path, columns=ColumnSpec(timestamp=None), options=ValidationOptions(strict=True)
        )
    relaxed = load_interactions(path, columns=ColumnSpec(timestamp=None))
    assert relaxed.report.warnings == ["extra columns ignored: genre"]
    assert relaxed.has_ratings and not relaxed.has_timestamps


def test_duplicates_keep_latest_timestamp(tmp_path):
    path = write(
        tmp_path / "dup.csv",
        "user_id,item_id,rating,timestamp\n"
        "u1,i1,1,300\n"  # line 2: latest, wins although it comes first
        "u1,i1,2,100\n"  # line 3
        "u1,i2,3,50\n"  # line 4
        "u1,i2,4,50\n"  # line 5: equal timestamps -> the later line wins
        "u2,i1,5,10\n",
    )
    result = load_interactions(path)
    frame = result.frame.set_index(["user_id", "item_id"])
    assert frame.loc[("u1", "i1"), "rating"] == 1.0
    assert frame.loc[("u1", "i2"), "rating"] == 4.0
    assert result.report.duplicates_dropped == 2
    assert result.report.rows_kept == 3
    assert_nothing_lost(result.report)
    dup = result.report.examples[0]
    assert (dup.line, dup.value) == (3, "u1, i1")
    assert "superseded by line 2" in dup.reason


def test_duplicates_without_timestamps_keep_later_line(tmp_path):
    path = write(tmp_path / "dup.tsv", "1\t9\t2\n1\t9\t5\n2\t9\t1\n")
    result = load_interactions(path)
    assert result.frame["rating"].tolist() == [5.0, 1.0]
    assert result.report.duplicates_dropped == 1


def test_string_ids_are_kept_as_stripped_strings(tmp_path):
    path = write(tmp_path / "s.csv", "user_id,item_id,rating\n  alice , book-1 ,5\n007,42,3\n")
    frame = load_interactions(path, columns=ColumnSpec(timestamp=None)).frame
    assert frame["user_id"].tolist() == ["alice", "007"]
    assert frame["item_id"].tolist() == ["book-1", "42"]
    assert frame["rating"].dtype == np.float32


def test_csv_with_header_and_custom_column_names(tmp_path):
    path = write(tmp_path / "c.csv", "ts,who,what,stars\n10,a,x,4.5\n11,b,y,3\n")
    result = load_interactions(path, columns=ColumnSpec("who", "what", "stars", "ts"))
    assert result.frame.to_dict("list") == {
        "user_id": ["a", "b"],
        "item_id": ["x", "y"],
        "rating": [4.5, 3.0],
        "timestamp": [10, 11],
    }
    assert result.frame["timestamp"].dtype == np.int64


def test_missing_configured_column_names_file_and_found_columns(tmp_path):
    path = write(tmp_path / "m.csv", "user_id,item_id,score\n1,2,3\n")
    with pytest.raises(DataError) as info:
        load_interactions(path)
    message = str(info.value)
    assert str(path) in message
    assert "'rating' (columns.rating) not found" in message
    assert "user_id, item_id, score" in message
    assert "columns.rating: null" in message


def test_implicit_file_with_rating_disabled(tmp_path):
    path = write(tmp_path / "i.csv", "user_id,item_id\n1,2\n1,3\n")
    result = load_interactions(path, columns=ColumnSpec(rating=None, timestamp=None))
    assert not result.has_ratings
    assert result.frame["rating"].tolist() == [1.0, 1.0]


def test_tsv_headerless_maps_columns_by_position(tmp_path):
    path = write(tmp_path / "u.data", "1\t10\t4\t881250949\n2\t20\t5\t881250950\n")
    result = load_interactions(path)
    assert result.has_ratings and result.has_timestamps
    assert result.frame["timestamp"].tolist() == [881250949, 881250950]
    assert result.report.rows_kept == 2


def test_two_column_headerless_file_is_implicit(tmp_path):
    path = write(tmp_path / "pairs.tsv", "u1\ti1\nu2\ti2\n")
    result = load_interactions(path)
    assert not result.has_ratings and not result.has_timestamps
    assert "no rating column: treated as implicit feedback (rating 1.0)" in result.report.warnings


def test_header_detected_from_numeric_second_line(tmp_path):
    path = write(tmp_path / "h.csv", "person,thing,score\n1,2,3\n")
    result = load_interactions(path, columns=ColumnSpec("person", "thing", "score", None))
    assert result.report.rows_read == 1
    # String ids on every line: no header.
    path = write(tmp_path / "n.csv", "alice,book\nbob,pen\n")
    assert load_interactions(path).report.rows_read == 2


def test_double_colon_format(tmp_path):
    path = write(tmp_path / "ratings.dat", "1::1193::5::978300760\n1::661::3::978302109\n")
    result = load_interactions(path)
    assert result.frame["item_id"].tolist() == ["1193", "661"]
    assert result.frame["rating"].tolist() == [5.0, 3.0]


def test_parquet_reports_rows_and_normalizes_ids(tmp_path):
    table = pa.table(
        {
            "user_id": pa.array([1, 2, 3, None], pa.int64()),
            "item_id": pa.array([10.0, 20.0, 30.0, 40.0]),
            "rating": pa.array([4.0, float("nan"), 3.0, 2.0]),
            "timestamp": pa.array([1, 2, 3, 4], pa.int64()),
        }
    )
    path = tmp_path / "i.parquet"
    pq.write_table(table, path)
    result = load_interactions(path)
    assert result.frame["user_id"].tolist() == ["1", "3"]
    assert result.frame["item_id"].tolist() == ["10", "30"]
    assert result.report.rejected == {"non-finite rating": 1, "missing user id": 1}
    described = [example.describe() for example in result.report.examples]
    assert described == [
        f"{path}:row 2: rating: non-finite rating ('nan')",
        f"{path}:row 4: user_id: missing user id ('')",
    ]


def test_empty_inputs_name_the_file(tmp_path):
    empty = write(tmp_path / "empty.csv", "")
    with pytest.raises(DataError, match=r"empty\.csv is empty"):
        load_interactions(empty)
    header_only = write(tmp_path / "header.csv", "user_id,item_id,rating,timestamp\n")
    with pytest.raises(DataError, match=r"header\.csv has no data rows"):
        load_interactions(header_only)
    all_bad = write(tmp_path / "bad.csv", "user_id,item_id,rating\n1,2,x\n3,4,y\n")
    with pytest.raises(DataError, match=r"bad\.csv: every row was rejected") as info:
        load_interactions(all_bad, columns=ColumnSpec(timestamp=None))
    assert "rejected 2 x unparsable rating" in str(info.value)


def test_empty_lines_are_skipped_with_a_warning_and_keep_line_numbers(tmp_path):
    path = write(tmp_path / "gaps.tsv", "1\t2\t3\n\n1\t3\tx\n")
    report = load_interactions(path).report
    assert report.rows_read == 2
    assert report.examples[0].line == 3
    assert "1 empty line(s) skipped (lines 2)" in report.warnings


def test_unknown_extension_and_format(tmp_path):
    path = write(tmp_path / "data.xyz", "1,2,3\n")
    with pytest.raises(DataError, match="cannot tell the file format"):
        load_interactions(path)
    assert load_interactions(path, fmt="csv").report.rows_kept == 1
    with pytest.raises(ConfigError, match="unknown format 'excel'"):
        load_interactions(path, fmt="excel")


def test_missing_file_is_named(tmp_path):
    with pytest.raises(DataError, match=r"nope\.csv: file not found"):
        load_interactions(tmp_path / "nope.csv")


def test_titles_attached_from_sibling_u_item(ml100k_dir):
    result = load_interactions(ml100k_dir / "ua.base")
    assert result.item_titles["1"] == "Toy Story (1995)"
    assert result.report.rows_kept == 90_570


def test_a_file_without_the_default_optional_columns_reads_and_says_so(tmp_path):
    """`user_id,item_id,rating` has no timestamps and `user_id,item_id` is implicit feedback,
    with the default config; a changed column name the file lacks is still an error."""
    rated = load_interactions(write(tmp_path / "r.csv", "user_id,item_id,rating\n1,2,4\n1,3,5\n"))
    assert not rated.has_timestamps and rated.frame["rating"].tolist() == [4.0, 5.0]
    assert any("no 'timestamp' column" in w for w in rated.report.warnings)
    clicks = load_interactions(write(tmp_path / "c.csv", "user_id,item_id\n1,2\n1,3\n"))
    assert not clicks.has_ratings and clicks.frame["rating"].tolist() == [1.0, 1.0]
    assert any("no 'rating' column" in w for w in clicks.report.warnings)
    with pytest.raises(DataError, match=r"'ts' \(columns.timestamp\) not found"):
        load_interactions(tmp_path / "r.csv", columns=ColumnSpec(timestamp="ts"))


def test_ids_are_encoded_once_and_read_as_their_normalized_text(tmp_path):
    """Ids are dictionary-encoded and only the distinct values normalized: ids equal after
    trimming are one id (a duplicate pair here), integral float ids read as integers, NaN is a
    missing id, and the frame holds each id column as a Categorical of the ids it uses."""
    path = tmp_path / "ids.parquet"
    pq.write_table(
        pa.table(
            {
                "user_id": pa.array([" a", "a", "b ", "c", "zz", "c"]),
                "item_id": pa.array([1.0, 1.0, 2.0, float("nan"), 3.0, 3.0]),
                "rating": pa.array([1.0, 2.0, 3.0, 4.0, 5.0, 1.0]),
            }
        ),
        path,
        row_group_size=2,  # several chunks, as a large file reads
    )
    result = load_interactions(path, columns=ColumnSpec(timestamp=None))
    report = result.report
    assert report.rejected == {"missing item id": 1}
    assert report.duplicates_dropped == 1
    assert_nothing_lost(report)
    duplicate = [e for e in report.examples if e.reason.startswith("duplicate")][0]
    assert (duplicate.line, duplicate.value) == (1, "a, 1")
    frame = result.frame
    assert frame["user_id"].tolist() == ["a", "b", "zz", "c"]
    assert frame["item_id"].tolist() == ["1", "2", "3", "3"]
    assert frame["rating"].tolist() == [2.0, 3.0, 5.0, 1.0]
    assert isinstance(frame["user_id"].dtype, pd.CategoricalDtype)
    assert list(frame["user_id"].cat.categories) == ["a", "b", "c", "zz"]  # used ones only
    assert list(frame["item_id"].cat.categories) == ["1", "2", "3"]


def test_dictionary_encoded_parquet_ids_read_like_plain_ones(tmp_path):
    plain, encoded = tmp_path / "plain.parquet", tmp_path / "encoded.parquet"
    table = pa.table({"user_id": ["u2", "u1", "u2"], "item_id": ["i1", "i1", "i2"]})
    pq.write_table(table, plain)
    pq.write_table(
        table.set_column(0, "user_id", pa.array(["u2", "u1", "u2"]).dictionary_encode()),
        encoded,
    )
    columns = ColumnSpec(rating=None, timestamp=None)
    first = load_interactions(plain, columns=columns).frame
    second = load_interactions(encoded, columns=columns).frame
    assert first["user_id"].tolist() == second["user_id"].tolist() == ["u2", "u1", "u2"]
    assert first["item_id"].tolist() == second["item_id"].tolist()
