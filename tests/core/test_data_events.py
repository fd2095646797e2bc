"""Event logs: parsing, weights, aggregation per pair, time decay, bad rows and strict mode."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from walsrec.data import ColumnSpec, EventOptions, ValidationOptions, load_interactions
from walsrec.errors import ConfigError, DataError

EVENTS = ColumnSpec(event="event_type", quantity="quantity")
DAY = 86_400


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def assert_every_event_accounted(report) -> None:
    assert report.duplicates_dropped == 0
    assert report.rows_read == (
        report.rows_kept + sum(report.rejected.values()) + report.events_aggregated
    )
    # Every kept event belongs to exactly one pair: the pair's first, or an aggregated one.
    assert sum(report.event_counts.values()) == report.rows_kept + report.events_aggregated


def as_dict(frame: pd.DataFrame) -> dict[tuple[str, str], float]:
    return {
        (user, item): float(value)
        for user, item, value in zip(
            frame["user_id"], frame["item_id"], frame["rating"], strict=True
        )
    }


LOG = (
    "user_id,item_id,event_type,timestamp,quantity\n"  # line 1
    f"u1,i1,view,{0 * DAY},\n"  # 2
    f"u2,i2,view,{1 * DAY},\n"  # 3
    f"u1,i1,cart,{2 * DAY},\n"  # 4
    f"u1,i1,purchase,{3 * DAY},2\n"  # 5
    f"u2,i1,purchase,{4 * DAY},\n"  # 6: a blank quantity is 1
    f"u2,i2,view,{0 * DAY},\n"  # 7: earlier than line 3 (out of order is fine)
)


def test_events_are_weighted_and_summed_per_pair(tmp_path):
    result = load_interactions(write(tmp_path / "log.csv", LOG), columns=EVENTS)
    assert result.feedback == "events"
    assert result.has_ratings is False and result.has_timestamps is True
    # Pairs in order of their first event; value = sum weight * quantity; latest timestamp.
    assert list(zip(result.frame["user_id"], result.frame["item_id"], strict=True)) == [
        ("u1", "i1"),
        ("u2", "i2"),
        ("u2", "i1"),
    ]
    assert result.frame["rating"].tolist() == [1.0 + 3.0 + 10.0 * 2, 1.0 + 1.0, 10.0]
    assert result.frame["timestamp"].tolist() == [3 * DAY, 1 * DAY, 4 * DAY]
    assert result.frame["rating"].dtype == np.float32
    report = result.report
    assert report.rows_read == 6 and report.rows_kept == 3 and report.events_aggregated == 3
    assert report.rejected == {}
    assert report.event_counts == {"view": 3, "cart": 1, "purchase": 2}
    assert_every_event_accounted(report)
    summary = report.summary()
    assert "6 events read, 0 rejected, 3 aggregated into the 3 (user, item) pairs kept" in summary
    assert "events kept by type: view 3, cart 1, purchase 2" in summary
    saved = json.loads(json.dumps(report.to_dict()))
    assert saved["events_aggregated"] == 3 and saved["event_counts"]["purchase"] == 2


def test_custom_weights_match_types_ignoring_case_and_spaces(tmp_path):
    path = write(
        tmp_path / "log.csv",
        "user_id,item_id,event_type,timestamp\nu1,i1, VIEW ,1\nu1,i1,AddToCart,2\nu2,i1,view,3\n",
    )
    options = ValidationOptions(events=EventOptions(weights={"View": 0.5, "addtocart": 4}))
    result = load_interactions(path, columns=ColumnSpec(event="event_type"), options=options)
    assert as_dict(result.frame) == {("u1", "i1"): 4.5, ("u2", "i1"): 0.5}
    assert result.report.event_counts == {"view": 2, "addtocart": 1}


def test_half_life_decays_by_age_from_the_newest_event(tmp_path):
    options = ValidationOptions(events=EventOptions(half_life_days=2.0))
    result = load_interactions(write(tmp_path / "log.csv", LOG), columns=EVENTS, options=options)
    # Newest event: day 4. Ages in days -> factor 0.5 ** (age / 2).
    expected = {
        ("u1", "i1"): 1.0 * 0.5**2.0 + 3.0 * 0.5**1.0 + 20.0 * 0.5**0.5,
        ("u2", "i2"): 1.0 * 0.5**1.5 + 1.0 * 0.5**2.0,
        ("u2", "i1"): 10.0,
    }
    assert as_dict(result.frame) == pytest.approx(expected, rel=1e-6)
    assert result.frame["timestamp"].tolist() == [3 * DAY, 1 * DAY, 4 * DAY]


def test_a_very_old_event_still_leaves_its_pair_observed(tmp_path):
    path = write(
        tmp_path / "log.csv",
        f"user_id,item_id,event_type,timestamp\nu1,i1,view,0\nu1,i2,view,{10_000 * DAY}\n",
    )
    options = ValidationOptions(events=EventOptions(half_life_days=1.0))
    result = load_interactions(path, columns=ColumnSpec(event="event_type"), options=options)
    values = as_dict(result.frame)
    # 0.5 ** 10000 underflows: the pair keeps the smallest positive float32, not 0.
    assert 0.0 < values[("u1", "i1")] <= float(np.finfo(np.float32).tiny)
    assert values[("u1", "i2")] == 1.0


BAD_LOG = (
    "user_id,item_id,event_type,timestamp,quantity\n"  # line 1
    "u1,i1,view,100,\n"  # 2 kept
    "u1,i2,click,100,\n"  # 3 unknown event type
    "u1,i3,,100,\n"  # 4 missing event type
    "u1,i4,purchase,100,-2\n"  # 5 non-positive quantity
    "u1,i5,purchase,100,0\n"  # 6 non-positive quantity
    "u1,i6,purchase,100,two\n"  # 7 unparsable quantity
    "u1,i7,purchase,100,nan\n"  # 8 non-finite quantity
    "u1,i8,view,soon,\n"  # 9 unparsable timestamp
    ",i9,view,100,\n"  # 10 missing user id
    "u1,i1,view,100\n"  # 11 wrong number of fields
    "u1,i2,click,100,\n"  # 12 unknown event type
    "u1,i1,purchase,200,3\n"  # 13 kept, aggregated into line 2's pair
)


def test_every_bad_event_row_is_counted_with_file_line_field_reason(tmp_path):
    path = write(tmp_path / "bad.csv", BAD_LOG)
    result = load_interactions(path, columns=EVENTS, options=ValidationOptions(max_examples=20))
    report = result.report
    assert report.rejected == {
        "wrong number of fields": 1,
        "missing user id": 1,
        "unparsable timestamp": 1,
        "missing event type": 1,
        "unknown event type": 2,
        "unparsable quantity": 1,
        "non-finite quantity": 1,
        "non-positive quantity": 2,
    }
    assert report.rows_read == 12 and report.rows_kept == 1 and report.events_aggregated == 1
    assert_every_event_accounted(report)
    assert as_dict(result.frame) == {("u1", "i1"): 1.0 + 30.0}
    summary = report.summary()
    for text in (
        f"{path}:3: event_type: unknown event type ('click')",
        f"{path}:4: event_type: missing event type ('')",
        f"{path}:5: quantity: non-positive quantity ('-2')",
        f"{path}:6: quantity: non-positive quantity ('0')",
        f"{path}:7: quantity: unparsable quantity ('two')",
        f"{path}:8: quantity: non-finite quantity ('nan')",
        f"{path}:9: timestamp: unparsable timestamp ('soon')",
        f"{path}:10: user_id: missing user id ('')",
        f"{path}:11: wrong number of fields (expected 5, found 4) ('u1,i1,view,100')",
    ):
        assert text in summary
    # The warning names the unknown types, so the missing weight is easy to add.
    assert any("'click' x 2" in warning for warning in report.warnings)


def test_strict_mode_fails_on_the_first_bad_event_row(tmp_path):
    path = write(tmp_path / "bad.csv", BAD_LOG)
    with pytest.raises(DataError) as caught:
        load_interactions(path, columns=EVENTS, options=ValidationOptions(strict=True))
    assert str(caught.value) == (
        f"{path}:3: event_type: unknown event type ('click') "
        f"[strict mode: set strict: false to skip and count bad rows]"
    )
    quantity_only = write(
        tmp_path / "qty.csv",
        "user_id,item_id,event_type,timestamp,quantity\nu1,i1,view,1,\nu1,i2,purchase,1,-1\n",
    )
    with pytest.raises(DataError, match=r"qty.csv:3: quantity: non-positive quantity \('-1'\)"):
        load_interactions(quantity_only, columns=EVENTS, options=ValidationOptions(strict=True))


def test_parquet_event_log_reads_like_csv_and_locates_rows(tmp_path):
    csv = load_interactions(write(tmp_path / "log.csv", LOG), columns=EVENTS)
    frame = pd.read_csv(tmp_path / "log.csv", dtype={"event_type": "category"})
    path = tmp_path / "log.parquet"
    # Categorical event types (pandas' usual choice) are stored as a dictionary column.
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)
    assert pa.types.is_dictionary(pq.read_schema(path).field("event_type").type)
    parquet = load_interactions(path, columns=EVENTS)
    pd.testing.assert_frame_equal(parquet.frame, csv.frame)
    assert parquet.report.event_counts == csv.report.event_counts

    bad = pa.table(
        {
            "user_id": ["u1", "u1", "u2"],
            "item_id": ["i1", "i2", "i3"],
            "event_type": ["view", "refund", "purchase"],
            "timestamp": [1, 2, 3],
            "quantity": [None, 1.0, float("inf")],
        }
    )
    pq.write_table(bad, tmp_path / "bad.parquet")
    report = load_interactions(tmp_path / "bad.parquet", columns=EVENTS).report
    assert [example.describe() for example in report.examples] == [
        f"{tmp_path / 'bad.parquet'}:row 2: event_type: unknown event type ('refund')",
        f"{tmp_path / 'bad.parquet'}:row 3: quantity: non-finite quantity ('inf')",
    ]
    assert_every_event_accounted(report)


def test_headerless_event_log_maps_by_position(tmp_path):
    path = write(tmp_path / "log.tsv", "u1\ti1\t5\tview\nu1\ti1\t9\tcart\nu2\ti1\t7\tview\n")
    result = load_interactions(path, columns=ColumnSpec(event="event_type"), header=False)
    assert as_dict(result.frame) == {("u1", "i1"): 4.0, ("u2", "i1"): 1.0}
    assert result.frame["timestamp"].tolist() == [9, 7]
    assert not any("no rating column" in warning for warning in result.report.warnings)
    too_few = write(tmp_path / "short.tsv", "u1\ti1\t5\n")
    with pytest.raises(DataError, match="too few for the event column"):
        load_interactions(too_few, columns=ColumnSpec(event="event_type"), header=False)


def test_a_rating_column_is_not_read_for_an_event_log(tmp_path):
    path = write(
        tmp_path / "log.csv", "user_id,item_id,rating,event_type\nu1,i1,5,view\nu1,i1,1,view\n"
    )
    result = load_interactions(path, columns=ColumnSpec(timestamp=None, event="event_type"))
    assert as_dict(result.frame) == {("u1", "i1"): 2.0}
    assert "timestamp" not in result.frame.columns
    assert "extra columns ignored: rating" in result.report.warnings


def test_missing_event_column_names_the_key_to_set(tmp_path):
    path = write(tmp_path / "log.csv", "user_id,item_id,timestamp,type\nu1,i1,1,view\n")
    with pytest.raises(DataError) as caught:
        load_interactions(path, columns=ColumnSpec(event="event_type"))
    message = str(caught.value)
    assert "column 'event_type' (columns.event) not found" in message
    assert "columns.event: null if the file is not an event log" in message


def test_event_options_and_columns_are_checked():
    with pytest.raises(ConfigError, match=r"data.events.weights.view: weight must be"):
        EventOptions(weights={"view": 0})
    with pytest.raises(ConfigError, match="listed twice"):
        EventOptions(weights={"view": 1, "VIEW": 2})
    with pytest.raises(ConfigError, match="half_life_days"):
        EventOptions(half_life_days=-1)
    with pytest.raises(ConfigError, match="columns.quantity is only read for event logs"):
        load_interactions(Path("unused.csv"), columns=ColumnSpec(quantity="qty"))
    with pytest.raises(ConfigError, match="half_life_days needs timestamps"):
        load_interactions(
            Path("unused.csv"),
            columns=ColumnSpec(timestamp=None, event="event_type"),
            options=ValidationOptions(events=EventOptions(half_life_days=7)),
        )


def test_files_without_an_event_column_read_as_before(tmp_path):
    path = write(tmp_path / "r.csv", "user_id,item_id,rating,timestamp\nu1,i1,4,1\nu1,i1,2,2\n")
    result = load_interactions(path)
    assert result.feedback == "ratings"
    assert result.frame["rating"].tolist() == [2.0] and result.report.duplicates_dropped == 1
    assert not result.report.is_event_log
    assert "events_aggregated" not in result.report.to_dict()
    binary = load_interactions(path, columns=ColumnSpec(rating=None, timestamp=None))
    assert binary.feedback == "binary"


def test_aggregation_matches_a_pandas_groupby_on_a_random_log(tmp_path):
    rng = np.random.default_rng(7)
    n = 5_000
    types = np.array(["view", "cart", "purchase", "bogus"])
    frame = pd.DataFrame(
        {
            "user_id": rng.integers(0, 60, n),
            "item_id": rng.integers(0, 40, n),
            "event_type": types[rng.choice(4, n, p=[0.7, 0.15, 0.1, 0.05])],
            "timestamp": rng.integers(0, 90 * DAY, n),
            "quantity": np.where(rng.random(n) < 0.5, rng.integers(1, 4, n), np.nan),
        }
    )
    path = tmp_path / "random.csv"
    frame.to_csv(path, index=False)
    options = ValidationOptions(events=EventOptions(half_life_days=14))
    result = load_interactions(path, columns=EVENTS, options=options)

    valid = frame[frame["event_type"] != "bogus"].copy()
    weights = valid["event_type"].map({"view": 1.0, "cart": 3.0, "purchase": 10.0})
    age_days = (valid["timestamp"].max() - valid["timestamp"]) / DAY
    valid["value"] = weights * valid["quantity"].fillna(1.0) * 0.5 ** (age_days / 14)
    expected = valid.groupby(["user_id", "item_id"]).agg(
        value=("value", "sum"), timestamp=("timestamp", "max")
    )
    got = result.frame.assign(
        user_id=result.frame["user_id"].astype(int), item_id=result.frame["item_id"].astype(int)
    ).set_index(["user_id", "item_id"])
    got = got.loc[expected.index]
    assert len(result.frame) == len(expected)
    np.testing.assert_allclose(got["rating"], expected["value"], rtol=1e-5)
    np.testing.assert_array_equal(got["timestamp"], expected["timestamp"])
    report = result.report
    assert report.rejected == {"unknown event type": int((frame["event_type"] == "bogus").sum())}
    assert_every_event_accounted(report)
