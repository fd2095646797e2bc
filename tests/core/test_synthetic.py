"""Synthetic data: exact shape, distinct pairs, seeded, power-law, planted structure learnable."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from walsrec import synthetic
from walsrec.data import ColumnSpec, load_interactions
from walsrec.errors import ConfigError
from walsrec.evaluation.metrics import evaluate
from walsrec.models.wals import WALSConfig, train_wals
from walsrec.synthetic import generate_event_log, generate_interactions
from walsrec.synthetic import main as synthetic_main


def test_shape_counts_and_distinct_pairs() -> None:
    data = generate_interactions(500, 300, 20_000, seed=1)
    assert data.n_interactions == 20_000
    assert data.users.min() >= 0 and data.users.max() < 500
    assert data.items.min() >= 0 and data.items.max() < 300
    keys = data.users.astype(np.int64) * 300 + data.items
    assert np.unique(keys).size == keys.size  # each (user, item) at most once
    assert np.all(np.diff(keys) > 0)  # sorted by user, then item
    user_counts = np.bincount(data.users, minlength=500)
    assert user_counts.min() >= 20  # min_user_interactions
    assert user_counts.max() <= 0.3 * 300  # max_user_fraction
    assert set(np.unique(data.ratings)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    matrix = data.to_csr()
    assert matrix.shape == (500, 300) and matrix.nnz == 20_000
    assert data.user_topics.shape == (500, 16) and data.item_topics.shape == (300, 16)


def test_same_seed_same_data_other_seed_other_data() -> None:
    first = generate_interactions(200, 100, 5_000, seed=3)
    second = generate_interactions(200, 100, 5_000, seed=3)
    other = generate_interactions(200, 100, 5_000, seed=4)
    assert np.array_equal(first.items, second.items)
    assert np.array_equal(first.ratings, second.ratings)
    assert not np.array_equal(first.items, other.items)


def test_popularity_follows_a_power_law() -> None:
    data = generate_interactions(3_000, 2_000, 150_000, seed=5)
    item_counts = np.sort(np.bincount(data.items, minlength=2_000))[::-1]
    user_counts = np.sort(np.bincount(data.users, minlength=3_000))[::-1]
    # The top 1% of items hold far more than 1% of the interactions, and the head-to-median
    # ratio is large: a long tail, as in MovieLens.
    assert item_counts[:20].sum() > 0.1 * data.n_interactions
    assert item_counts[0] > 20 * np.median(item_counts)
    assert user_counts[0] > 10 * np.median(user_counts)
    # Zipf: log(count) falls about linearly with log(rank) over the head.
    ranks = np.arange(1, 201)
    slope = np.polyfit(np.log(ranks), np.log(item_counts[:200]), 1)[0]
    assert -1.5 < slope < -0.4, slope
    uniform = generate_interactions(3_000, 2_000, 150_000, item_exponent=0.0, seed=5)
    flat_counts = np.bincount(uniform.items, minlength=2_000)
    assert flat_counts.max() < 0.5 * item_counts[0]


def test_planted_structure_is_recoverable() -> None:
    # Sharper tastes than the defaults (one or two topics per user, 5% noise) on a flatter
    # catalogue, so that taste rather than popularity decides what a user picks next.
    data = generate_interactions(
        1_500,
        600,
        60_000,
        n_topics=8,
        topic_concentration=0.1,
        noise=0.05,
        item_exponent=0.7,
        seed=7,
    )
    rng = np.random.default_rng(0)
    # Hold out one interaction per user.
    order = np.argsort(data.users + rng.random(data.users.size), kind="stable")
    first = np.r_[True, data.users[order][1:] != data.users[order][:-1]]
    shape = (data.n_users, data.n_items)

    def matrix(rows: np.ndarray) -> sp.csr_matrix:
        return sp.csr_matrix((data.ratings[rows], (data.users[rows], data.items[rows])), shape)

    train, test = matrix(order[~first]), matrix(order[first])
    model = train_wals(train, WALSConfig(n_factors=16, epochs=8, regularization=50.0, alpha=1.0))
    learned = evaluate(model.score_users, train, test, k=10)["ndcg@10"]
    popularity = np.asarray(train.sum(axis=0)).ravel()
    popular = evaluate(
        lambda users: np.broadcast_to(popularity, (users.size, popularity.size)).copy(),
        train,
        test,
        k=10,
    )["ndcg@10"]
    # The tastes are learnable: factors beat popularity by a wide margin.
    assert learned > 1.5 * popular, (learned, popular)
    # The planted mixtures explain the data too (an oracle: P(item | user) up to popularity).
    oracle_scores = data.user_topics @ (data.item_topics * data.item_popularity[:, None]).T
    oracle = evaluate(lambda users: oracle_scores[users], train, test, k=10)["ndcg@10"]
    assert oracle > 1.5 * popular, (oracle, popular)
    assert learned > 0.7 * oracle, (learned, oracle)


def test_parquet_round_trip(tmp_path) -> None:
    data = generate_interactions(50, 40, 500, seed=2)
    path = data.write_parquet(tmp_path / "interactions.parquet")
    frame = pd.read_parquet(path)
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert len(frame) == 500
    assert np.array_equal(frame["item_id"].to_numpy(), data.items)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (dict(n_users=10, n_items=10, n_interactions=5), "n_interactions must be between"),
        (dict(n_users=10, n_items=10, n_interactions=60), "n_interactions must be between"),
        (dict(n_users=0, n_items=10, n_interactions=5), "n_users >= 1"),
        (dict(n_users=10, n_items=10, n_interactions=20, noise=2.0), "noise"),
    ],
)
def test_rejects_impossible_shapes(arguments: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        generate_interactions(**arguments)


def test_feedback_kinds_share_pairs_and_differ_in_values() -> None:
    ratings = generate_interactions(300, 400, 9_000, seed=5)
    counts = generate_interactions(300, 400, 9_000, feedback="counts", seed=5)
    binary = generate_interactions(300, 400, 9_000, feedback="binary", seed=5)
    assert np.array_equal(ratings.items, counts.items)
    assert np.array_equal(ratings.users, binary.users)
    assert np.all(binary.ratings == 1.0)
    # Play counts: integers >= 1 with a heavy tail (the top percent far above the median).
    values = counts.ratings
    assert values.min() >= 1 and np.all(values == np.rint(values))
    assert np.percentile(values, 99) > 20 * np.median(values)
    # Higher counts go with the planted tastes, as higher ratings do.
    affinity = np.einsum(
        "ij,ij->i", counts.user_topics[counts.users], counts.item_topics[counts.items]
    )
    assert np.corrcoef(np.log(values), affinity)[0, 1] > 0.1
    with pytest.raises(ConfigError, match="feedback"):
        generate_interactions(300, 400, 9_000, feedback="stars")


def test_event_log_covers_the_pairs_with_views_carts_and_purchases() -> None:
    pairs = generate_interactions(300, 400, 9_000, seed=5)
    log = generate_event_log(300, 400, 9_000, seed=5)
    # The pairs are exactly those of generate_interactions with the same seed.
    assert np.array_equal(log.pairs.users, pairs.users)
    assert np.array_equal(log.pairs.items, pairs.items)
    pair_keys = log.users.astype(np.int64) * 400 + log.items
    per_pair = pd.crosstab(pair_keys, log.events).rename(
        columns={0: "views", 1: "carts", 2: "purchases"}
    )
    assert len(per_pair) == 9_000 and per_pair["views"].min() >= 1
    assert per_pair["carts"].max() == 1 and per_pair["purchases"].max() == 1
    # Every purchase was carted first, and the log is in time order.
    assert np.all(per_pair["purchases"] <= per_pair["carts"])
    assert np.all(np.diff(log.timestamps) >= 0)
    counts = np.bincount(log.events, minlength=3)
    assert counts[0] > counts[1] > counts[2] > 0
    # Quantities only on purchases, whole numbers >= 1.
    bought = log.events == 2
    assert np.isnan(log.quantities[~bought]).all()
    assert log.quantities[bought].min() >= 1
    assert np.all(log.quantities[bought] == np.rint(log.quantities[bought]))
    # Carts and purchases concentrate on the pairs the planted tastes favour.
    keys = log.pairs.users.astype(np.int64) * 400 + log.pairs.items
    affinity = np.einsum("ij,ij->i", pairs.user_topics[pairs.users], pairs.item_topics[pairs.items])
    ordered = per_pair.loc[keys]
    high = affinity > np.quantile(affinity, 0.75)
    low = affinity < np.quantile(affinity, 0.25)
    assert ordered["purchases"][high].mean() > 3 * ordered["purchases"][low].mean()
    assert ordered["views"][high].mean() > ordered["views"][low].mean()
    again = generate_event_log(300, 400, 9_000, seed=5)
    assert np.array_equal(again.timestamps, log.timestamps)
    assert np.array_equal(again.events, log.events)


def test_event_log_files_read_back_as_the_generated_pairs(tmp_path) -> None:
    log = generate_event_log(60, 80, 900, seed=4)
    columns = ColumnSpec(event="event_type", quantity="quantity")
    for path in (log.write_csv(tmp_path / "log.csv"), log.write_parquet(tmp_path / "log.parquet")):
        result = load_interactions(path, columns=columns)
        report = result.report
        assert report.rejected == {} and report.rows_read == log.n_events
        assert report.rows_kept == 900
        frame = result.frame.assign(
            user=result.frame["user_id"].astype(int), item=result.frame["item_id"].astype(int)
        ).sort_values(["user", "item"])
        # pairs.ratings is the value with the default weights: the reader must agree.
        np.testing.assert_allclose(frame["rating"].to_numpy(), log.pairs.ratings, rtol=1e-6)
        assert np.array_equal(frame["user"].to_numpy(), log.pairs.users)
    without = generate_event_log(60, 80, 900, seed=4, quantities=False)
    assert "quantity" not in without.to_frame().columns
    with pytest.raises(ConfigError, match="cart_rate"):
        generate_event_log(60, 80, 900, cart_rate=2.0)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_command_line_writes_an_event_log(tmp_path, capsys, suffix: str) -> None:
    output = tmp_path / f"events{suffix}"
    synthetic_main(["--shape", "ml-latest-small", "--feedback", "events", "--output", str(output)])
    assert "events on 100,836 (user, item) pairs" in capsys.readouterr().out
    result = load_interactions(output, columns=ColumnSpec(event="event_type", quantity="quantity"))
    assert result.report.rows_kept == 100_836 and result.report.rejected == {}


def test_command_line_writes_csv_interactions(tmp_path) -> None:
    output = tmp_path / "ratings.csv"
    synthetic_main(["--shape", "ml-latest-small", "--output", str(output)])
    frame = pd.read_csv(output)
    assert list(frame.columns) == ["user_id", "item_id", "rating", "timestamp"]
    assert len(frame) == 100_836


def test_write_interactions_streams_blocks_with_the_same_activity(tmp_path):
    import pyarrow.parquet as pq

    path = tmp_path / "blocks.parquet"
    rows = synthetic.write_interactions(path, 5_000, 2_000, 120_000, block_users=700, seed=4)
    table = pq.read_table(path)
    assert rows == table.num_rows == 120_000
    assert pq.ParquetFile(path).num_row_groups == 8  # ceil(5,000 / 700)
    users, items = table["user_id"].to_numpy(), table["item_id"].to_numpy()
    keys = users * 2_000 + items
    assert (np.diff(keys) > 0).all()  # distinct pairs, by user then item
    ratings = table["rating"].to_numpy()
    assert set(np.unique(ratings)) <= {1, 2, 3, 4, 5}
    # Activity is drawn for all users first: the same per-user counts for any block size.
    other = tmp_path / "other.parquet"
    synthetic.write_interactions(other, 5_000, 2_000, 120_000, block_users=5_000, seed=4)
    other_users = pq.read_table(other)["user_id"].to_numpy()
    assert np.array_equal(np.bincount(users), np.bincount(other_users))
    # The same seed and blocks: the same file.
    again = tmp_path / "again.parquet"
    synthetic.write_interactions(again, 5_000, 2_000, 120_000, block_users=700, seed=4)
    assert pq.read_table(again).equals(table)
    # The planted structure is there: a user's items concentrate on few topics, as in memory.
    data = synthetic.generate_interactions(5_000, 2_000, 120_000, seed=4)
    popular = np.bincount(items, minlength=2_000).max() / 120_000
    assert 0.5 < popular / (np.bincount(data.items, minlength=2_000).max() / 120_000) < 2


def test_write_interactions_memory_is_one_block(tmp_path):
    import tracemalloc

    tracemalloc.start()
    synthetic.generate_interactions(40_000, 5_000, 1_000_000, feedback="binary", seed=1)
    whole = tracemalloc.get_traced_memory()[1]
    tracemalloc.reset_peak()
    synthetic.write_interactions(
        tmp_path / "b.parquet", 40_000, 5_000, 1_000_000, block_users=2_000, feedback="binary"
    )
    blocks = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert blocks < 0.25 * whole, (blocks, whole)


def test_the_command_writes_any_size_block_by_block(tmp_path, monkeypatch, capsys):
    import pyarrow.csv as pa_csv

    monkeypatch.setattr(synthetic, "STREAMED_ABOVE", 10_000)
    out = tmp_path / "big.csv"
    synthetic.main(["--size", "3000", "800", "40000", "--feedback", "counts", "--output", str(out)])
    assert "block by block" in capsys.readouterr().out
    table = pa_csv.read_csv(out)
    assert table.num_rows == 40_000 and table.column_names[:2] == ["user_id", "item_id"]
    with pytest.raises(SystemExit):
        synthetic.main(["--size", "3000", "800", "40000", "--feedback", "events", "--output", "x"])
    assert "events" in capsys.readouterr().err
