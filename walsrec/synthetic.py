"""Synthetic implicit-feedback data with a known low-rank structure, at any size.

Real datasets at MovieLens-20M size are slow to fetch and cannot be redistributed, so the
benchmarks and scale tests generate data with the features that matter for a recommender:

- power-law user activity: a few users have thousands of interactions, most have a few dozen
  (every user gets at least `min_user_interactions`);
- power-law item popularity: a few blockbusters, a long tail of items seen a handful of times;
- a planted low-rank structure so that quality can be measured: every user has a mixture over
  `n_topics` tastes and every item belongs mostly to one or two topics, and a user picks an item
  with probability proportional to

      popularity_i * sum_z user_topics[u, z] * item_topics[i, z]

  (a rank-`n_topics` non-negative factorization times item popularity, as in LDA-style
  generative models). A fraction `noise` of the interactions ignores the tastes and follows
  popularity alone.

Each (user, item) pair appears at most once, with a value of the chosen `feedback` kind and a
timestamp: an integer rating 1..5 like MovieLens (`ratings`, higher for items in the user's
favourite topics), a heavy-tailed play count 1..~10^5 like a music service's (`counts`: a
per-user log-normal scale times the same affinity), or 1 for every pair (`binary`: clicks,
purchases, follows). Everything is vectorized: 20M
interactions take a few seconds, and the same seed gives the same data.

E-commerce event logs (`generate_event_log`): the same pairs, each seen through several events
as a shop's click log records them. Every pair gets at least one `view` (more for items the user
likes), is put in the `cart` with a probability that grows with the planted affinity, and a
carted pair is `purchase`d (with a quantity, mostly 1) with a probability that grows with it
too. A pair's events follow each other in time (views, then cart, then purchase) from the pair's
timestamp, and the log is in time order, like a real one. Training on it needs the event
columns: `columns: {event: event_type, quantity: quantity}` (see the README's "Event logs").

Run `python -m walsrec.synthetic --shape ml-20m --output data.parquet` to write a file that
`python run.py --data data.parquet` trains on; `--feedback events` writes an event log and an
`--output` ending in `.csv` writes CSV instead of Parquet. `--size USERS ITEMS INTERACTIONS`
gives any shape; above 2 * 10^7 interactions the file is written a block of users at a time
(`write_interactions`), so 10^8 interactions fit in a few GB.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from walsrec.errors import ConfigError

__all__ = [
    "EVENT_TYPES",
    "FEEDBACK_KINDS",
    "SHAPES",
    "SyntheticData",
    "SyntheticEventLog",
    "generate_event_log",
    "generate_interactions",
]

SHAPES: dict[str, tuple[int, int, int]] = {
    # (users, items, interactions) of the MovieLens releases, for data of the same shape.
    "ml-100k": (943, 1_682, 100_000),
    "ml-1m": (6_040, 3_706, 1_000_209),
    "ml-20m": (138_493, 26_744, 20_000_263),
    # Shapes of other public datasets the project never trains on in its tests: a larger
    # movie catalogue and a music play-count set (listening counts per user and artist).
    "ml-latest-small": (610, 9_724, 100_836),
    "lastfm-2k": (1_892, 17_632, 92_834),
}
"""Named shapes: (n_users, n_items, n_interactions) of public datasets."""

FEEDBACK_KINDS = ("ratings", "counts", "binary")
"""The kinds of value `generate_interactions` writes into `ratings`."""

EVENT_TYPES = ("view", "cart", "purchase")
"""The event types of `generate_event_log`, in the order of `SyntheticEventLog.events` codes."""


@dataclass
class SyntheticData:
    """Generated interactions and the structure they were drawn from.

    Attributes:
        users: int32 [n] user index of each interaction, 0..n_users - 1.
        items: int32 [n] item index of each interaction, 0..n_items - 1.
        ratings: float32 [n] the value: rating 1..5, play count >= 1, or 1 (see `feedback`).
        timestamps: int64 [n] seconds since the epoch (increasing per user, for temporal splits).
        n_users: number of users (every one has at least one interaction).
        n_items: number of items (some tail items may have none).
        user_topics: float64 [n_users, n_topics] the planted taste mixture of each user.
        item_topics: float64 [n_items, n_topics] the planted topic mixture of each item.
        item_popularity: float64 [n_items] the planted popularity (sums to 1).
    """

    users: np.ndarray
    items: np.ndarray
    ratings: np.ndarray
    timestamps: np.ndarray
    n_users: int
    n_items: int
    user_topics: np.ndarray
    item_topics: np.ndarray
    item_popularity: np.ndarray
    feedback: str = "ratings"

    @property
    def n_interactions(self) -> int:
        return int(self.users.size)

    def to_csr(self) -> sp.csr_matrix:
        """The users x items matrix of ratings (float32 CSR, sorted indices)."""
        matrix = sp.csr_matrix(
            (self.ratings, (self.users, self.items)),
            shape=(self.n_users, self.n_items),
            dtype=np.float32,
        )
        matrix.sort_indices()
        return matrix

    def to_frame(self):  # -> pandas.DataFrame (pandas imported lazily: the core needs none)
        """The interactions as a DataFrame with MovieLens's columns user_id, item_id, rating,
        timestamp (ids are the indices, as int64)."""
        import pandas as pd

        return pd.DataFrame(
            {
                "user_id": self.users.astype(np.int64),
                "item_id": self.items.astype(np.int64),
                "rating": self.ratings,
                "timestamp": self.timestamps,
            }
        )

    def _table(self):  # -> pyarrow.Table
        import pyarrow as pa

        return pa.table(
            {
                "user_id": self.users.astype(np.int64),
                "item_id": self.items.astype(np.int64),
                "rating": self.ratings,
                "timestamp": self.timestamps,
            }
        )

    def write_parquet(self, path: str | Path) -> Path:
        """Write the interactions to a Parquet file (see `to_frame` for the columns)."""
        import pyarrow.parquet as pq

        path = Path(path)
        pq.write_table(self._table(), path)
        return path

    def write_csv(self, path: str | Path) -> Path:
        """Write the interactions to a CSV file with a header (see `to_frame` for the columns)."""
        import pyarrow.csv as pa_csv

        path = Path(path)
        pa_csv.write_csv(self._table(), path)
        return path


@dataclass
class SyntheticEventLog:
    """A generated e-commerce event log and the pairs (with their structure) it was drawn from.

    Attributes:
        users: int32 [n_events] user index of each event.
        items: int32 [n_events] item index of each event.
        events: int8 [n_events] index into `EVENT_TYPES` of each event.
        quantities: float32 [n_events] items bought by a purchase; NaN for other events (and
            for every event when quantities were not asked for).
        timestamps: int64 [n_events] seconds since the epoch, non-decreasing (the log is in time
            order).
        pairs: the distinct pairs from `generate_interactions` with the planted structure;
            `pairs.ratings` holds the aggregated value each pair gets with the default
            `walsrec.data.EventOptions` weights (no decay), for checking a reader.
        has_quantities: whether the log has a quantity column.
    """

    users: np.ndarray
    items: np.ndarray
    events: np.ndarray
    quantities: np.ndarray
    timestamps: np.ndarray
    pairs: SyntheticData
    has_quantities: bool = True

    @property
    def n_events(self) -> int:
        return int(self.users.size)

    def _table(self, dictionary_events: bool):  # -> pyarrow.Table
        import pyarrow as pa

        codes = pa.array(self.events, pa.int8())
        names = pa.array(EVENT_TYPES, pa.string())
        event_column = pa.DictionaryArray.from_arrays(codes, names)
        if not dictionary_events:
            event_column = event_column.cast(pa.string())
        columns = {
            "user_id": self.users.astype(np.int64),
            "item_id": self.items.astype(np.int64),
            "event_type": event_column,
            "timestamp": self.timestamps,
        }
        if self.has_quantities:
            columns["quantity"] = pa.array(self.quantities, mask=np.isnan(self.quantities))
        return pa.table(columns)

    def to_frame(self):  # -> pandas.DataFrame
        """The log as a DataFrame: user_id, item_id (int64), event_type (categorical), timestamp
        and, when present, quantity (NaN except for purchases)."""
        return self._table(dictionary_events=True).to_pandas()

    def write_parquet(self, path: str | Path) -> Path:
        """Write the log to Parquet (event_type as a dictionary column; see `to_frame`)."""
        import pyarrow.parquet as pq

        path = Path(path)
        pq.write_table(self._table(dictionary_events=True), path)
        return path

    def write_csv(self, path: str | Path) -> Path:
        """Write the log to CSV with a header; a missing quantity is an empty field."""
        import pyarrow.csv as pa_csv

        path = Path(path)
        pa_csv.write_csv(self._table(dictionary_events=False), path)
        return path


def generate_interactions(
    n_users: int,
    n_items: int,
    n_interactions: int,
    *,
    n_topics: int = 16,
    user_exponent: float = 1.0,
    item_exponent: float = 0.8,
    min_user_interactions: int = 20,
    max_user_fraction: float = 0.3,
    topic_concentration: float = 0.1,
    noise: float = 0.1,
    feedback: str = "ratings",
    seed: int = 0,
) -> SyntheticData:
    """Draw `n_interactions` distinct (user, item) pairs with power-law popularity and tastes.

    Args:
        n_users: number of users, >= 1.
        n_items: number of items, >= 2.
        n_interactions: distinct pairs to draw; at most half of n_users * n_items.
        n_topics: rank of the planted structure.
        user_exponent: user activity is proportional to rank ** -user_exponent (Zipf); larger
            is more skewed, 0 is uniform.
        item_exponent: item popularity is proportional to rank ** -item_exponent.
        min_user_interactions: every user gets at least this many (lowered if the total is too
            small for it), as MovieLens keeps users with >= 20 ratings.
        max_user_fraction: no user interacts with more than this fraction of the items.
        topic_concentration: Dirichlet concentration of the user and item topic mixtures;
            small values give users and items one or two dominant topics (strong structure).
        noise: fraction of the interactions drawn from item popularity alone.
        feedback: the value of each pair: "ratings" (1..5), "counts" (play counts >= 1 with a
            heavy tail) or "binary" (1). The pairs themselves do not depend on it.
        seed: seed of the generator; the same arguments and seed give the same data.

    Returns:
        The interactions sorted by user then item, with the planted structure.

    Raises:
        ConfigError: an argument is out of range.
    """
    _check_arguments(n_users, n_items, n_interactions, n_topics, max_user_fraction, noise)
    _check_feedback(feedback)
    rng = np.random.default_rng(seed)
    user_counts = _user_counts(
        rng,
        n_users,
        n_items,
        n_interactions,
        user_exponent,
        min_user_interactions,
        max_user_fraction,
    )
    popularity = _popularity(rng, n_items, item_exponent)
    user_topics = rng.dirichlet(np.full(n_topics, topic_concentration), size=n_users)
    item_topics = rng.dirichlet(np.full(n_topics, topic_concentration), size=n_items)
    topic_items = _topic_items(popularity, item_topics)

    users, items, values, timestamps = _draw_pairs(
        rng, user_counts, user_topics, item_topics, topic_items, popularity, noise, feedback
    )
    return SyntheticData(
        users=users,
        items=items,
        ratings=values,
        timestamps=timestamps,
        n_users=n_users,
        n_items=n_items,
        user_topics=user_topics,
        item_topics=item_topics,
        item_popularity=popularity,
        feedback=feedback,
    )


STREAMED_ABOVE = 20_000_000
"""`python -m walsrec.synthetic` writes data of more interactions than this block by block."""


def write_interactions(
    path: str | Path,
    n_users: int,
    n_items: int,
    n_interactions: int,
    *,
    block_users: int = 500_000,
    n_topics: int = 16,
    user_exponent: float = 1.0,
    item_exponent: float = 0.8,
    min_user_interactions: int = 20,
    max_user_fraction: float = 0.3,
    topic_concentration: float = 0.1,
    noise: float = 0.1,
    feedback: str = "ratings",
    seed: int = 0,
) -> int:
    """Write `generate_interactions`' kind of data to Parquet (one row group per block) or CSV
    (a path ending in .csv), drawing `block_users` users at a time: memory is that of the item
    tables and one block, whatever the total: 10^8 binary interactions of 10^7 users over 10^6
    items took 225 s at a peak RSS of 2.5 GB (`python -m walsrec.synthetic --size 10000000
    1000000 100000000 --feedback binary`, 2 cores); `generate_interactions` holds all of them
    and their draws at once and was killed at 23.6 GB there.

    The same model and arguments as `generate_interactions` (user activity and caps are drawn
    for all users first, then each block's tastes and pairs), but another random stream: a
    seed gives other data than `generate_interactions` with that seed; the same seed and
    `block_users` give the same file. Returns the number of rows written.

    Raises:
        ConfigError: an argument is out of range.
    """
    import pyarrow as pa

    _check_arguments(n_users, n_items, n_interactions, n_topics, max_user_fraction, noise)
    _check_feedback(feedback)
    if isinstance(block_users, bool) or not isinstance(block_users, int) or block_users < 1:
        raise ConfigError(f"block_users must be an integer >= 1, got {block_users!r}")
    n_blocks = -(-n_users // block_users)
    first, *per_block = np.random.SeedSequence(seed).spawn(n_blocks + 1)
    rng = np.random.default_rng(first)
    user_counts = _user_counts(
        rng,
        n_users,
        n_items,
        n_interactions,
        user_exponent,
        min_user_interactions,
        max_user_fraction,
    )
    popularity = _popularity(rng, n_items, item_exponent)
    item_topics = rng.dirichlet(np.full(n_topics, topic_concentration), size=n_items)
    topic_items = _topic_items(popularity, item_topics)
    schema = pa.schema(
        [("user_id", pa.int64()), ("item_id", pa.int64()), ("rating", pa.float32()),
         ("timestamp", pa.int64())]
    )  # fmt: skip
    path = Path(path)
    csv = path.suffix.lower() == ".csv"
    if csv:
        import pyarrow.csv as pa_csv

        writer = pa_csv.CSVWriter(path, schema)
    else:
        import pyarrow.parquet as pq

        writer = pq.ParquetWriter(path, schema)
    written = 0
    with writer:
        for block, block_seed in enumerate(per_block):
            start = block * block_users
            counts = user_counts[start : start + block_users]
            block_rng = np.random.default_rng(block_seed)
            user_topics = block_rng.dirichlet(
                np.full(n_topics, topic_concentration), size=counts.size
            )
            users, items, values, timestamps = _draw_pairs(
                block_rng, counts, user_topics, item_topics, topic_items, popularity, noise,
                feedback,
            )  # fmt: skip
            table = pa.table(
                [users.astype(np.int64) + start, items.astype(np.int64), values, timestamps],
                schema=schema,
            )
            writer.write_table(table)
            written += table.num_rows
    return written


def _check_feedback(feedback: str) -> None:
    if feedback not in FEEDBACK_KINDS:
        kinds = ", ".join(FEEDBACK_KINDS)
        raise ConfigError(f"feedback must be one of {kinds}, got {feedback!r}")


def _popularity(rng: np.random.Generator, n_items: int, exponent: float) -> np.ndarray:
    """Zipf popularity over a random order of the items, so that item index says nothing."""
    popularity = np.empty(n_items)
    popularity[rng.permutation(n_items)] = np.arange(1, n_items + 1) ** -float(exponent)
    return popularity / popularity.sum()


def _topic_items(popularity: np.ndarray, item_topics: np.ndarray) -> np.ndarray:
    """[n_topics, n_items]: P(item | topic), proportional to popularity * item_topics[:, topic]."""
    topic_items = (popularity[:, np.newaxis] * item_topics).T
    topic_items /= topic_items.sum(axis=1, keepdims=True)
    return topic_items


def _draw_pairs(
    rng: np.random.Generator,
    user_counts: np.ndarray,
    user_topics: np.ndarray,
    item_topics: np.ndarray,
    topic_items: np.ndarray,
    popularity: np.ndarray,
    noise: float,
    feedback: str,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The pairs of users `0 .. len(user_counts) - 1` (each gets its count of distinct items),
    sorted by user then item, with their values and timestamps: (users, items, values,
    timestamps). `generate_interactions` draws all users at once, `write_interactions` a block
    of them at a time."""
    n_users, n_items = user_counts.size, popularity.size
    # Draw with replacement, drop repeated pairs, and top users up with fresh draws until each
    # has its count (a user's repeats are mostly popular items, so few rounds are needed).
    keys = np.zeros(0, dtype=np.int64)
    missing = user_counts.copy()
    for round_number in range(_MAX_ROUNDS):
        if not missing.any():
            break
        # Oversample a little: duplicates are dropped and extras trimmed below.
        wanted = np.ceil(missing * 1.1 + (missing > 0) * 2).astype(np.int64)
        if round_number < _STRUCTURED_ROUNDS:
            users, items = _draw_items(rng, wanted, user_topics, topic_items, popularity, noise)
        else:
            # A very active user can exhaust the items its tastes make likely: fill the rest
            # uniformly (a few hundred users, a small fraction of the interactions).
            users = np.repeat(np.arange(n_users, dtype=np.int64), wanted)
            items = rng.integers(0, n_items, users.size)
        keys = _distinct(np.concatenate([keys, users * n_items + items]))
        have = np.bincount(keys // n_items, minlength=n_users)
        missing = np.maximum(user_counts - have, 0)
    # Trim each user's extras at random, so every user has exactly their count.
    # Sorting user + U[0, 1) shuffles within each user and keeps users in order.
    key_users = keys // n_items
    keys = keys[np.argsort(key_users + rng.random(keys.size))]
    starts = np.searchsorted(key_users, np.arange(n_users))
    position = np.arange(keys.size) - starts[key_users]
    keys = np.sort(keys[position < user_counts[key_users]])
    users = (keys // n_items).astype(np.int32)
    items = (keys % n_items).astype(np.int32)

    # Ratings: 1..5, higher for the user's favourite topics plus a per-user leniency.
    affinity = np.einsum("ij,ij->i", user_topics[users], item_topics[items])
    favourite = user_topics.max(axis=1)[users]
    leniency = rng.normal(0.0, 0.5, n_users)[users]
    score = 2.5 + 2.0 * affinity / np.maximum(favourite, 1e-12) + leniency
    ratings = np.clip(np.rint(score + rng.normal(0.0, 0.7, users.size)), 1, 5).astype(np.float32)
    # Drawn after the ratings, so a seed gives the same pairs for every kind (and the same
    # ratings and timestamps as before feedback kinds existed).
    values = _feedback_values(rng, feedback, users, n_users, affinity, favourite, ratings)
    # Timestamps: each user's interactions at random times in one year from 2015-01-01.
    timestamps = 1_420_070_400 + rng.integers(0, 365 * 86_400, users.size, dtype=np.int64)
    return users, items, values, timestamps


def _feedback_values(
    rng: np.random.Generator,
    feedback: str,
    users: np.ndarray,
    n_users: int,
    affinity: np.ndarray,
    favourite: np.ndarray,
    ratings: np.ndarray,
) -> np.ndarray:
    """The value of each pair for `feedback` (see `generate_interactions`)."""
    if feedback == "ratings":
        return ratings
    if feedback == "binary":
        return np.ones(users.size, dtype=np.float32)
    # Play counts: a per-user scale (some users listen a lot more than others: log-normal,
    # median about 50 plays per pair), times exp(affinity) and a log-normal repeat factor, so
    # that counts span 1 to about 10^5 with a heavy tail, as a music service's logs do.
    scale = rng.lognormal(np.log(50.0), 1.0, n_users)[users]
    taste = 2.0 * affinity / np.maximum(favourite, 1e-12)
    counts = scale * np.exp(taste - 1.0 + rng.normal(0.0, 1.3, users.size))
    return np.maximum(np.rint(counts), 1.0).astype(np.float32)


def generate_event_log(
    n_users: int,
    n_items: int,
    n_pairs: int,
    *,
    views_per_pair: float = 2.0,
    cart_rate: float = 0.15,
    purchase_rate: float = 0.4,
    quantities: bool = True,
    seed: int = 0,
    **pair_options,
) -> SyntheticEventLog:
    """Draw `n_pairs` (user, item) pairs with `generate_interactions` and events for each.

    A pair's taste is its planted affinity relative to the user's favourite topic (0..1). It
    gets 1 + Poisson((views_per_pair - 1) * 2 * taste) views, a cart with probability
    min(1, cart_rate * (0.25 + 1.5 * taste)) and, once carted, a purchase with probability
    min(1, purchase_rate * (0.5 + taste)), so carts and purchases concentrate on the pairs the
    planted structure favours. Purchases buy 1 + Geometric items (mostly 1). Events start at
    the pair's timestamp: views within 3 days, the cart a day later, the purchase within the
    day after the cart.

    Args:
        n_users: as for `generate_interactions`.
        n_items: as for `generate_interactions`.
        n_pairs: distinct pairs (`n_interactions` of `generate_interactions`); the log has more
            rows, about 1.3 to 2.5 per pair with the defaults.
        views_per_pair: mean views of a pair of average taste (>= 1).
        cart_rate: scale of the cart probability, in [0, 1].
        purchase_rate: scale of the purchase probability of a carted pair, in [0, 1].
        quantities: whether purchases carry a quantity column (else every event counts 1).
        seed: seed of the pairs and of the events.
        **pair_options: other keyword arguments of `generate_interactions` (`n_topics`,
            `noise`, ...; not `feedback`).

    Returns:
        The log in time order and the pairs it was drawn from.

    Raises:
        ConfigError: an argument is out of range.
    """
    if "feedback" in pair_options:
        raise ConfigError("generate_event_log: feedback is always events; do not pass it")
    if not views_per_pair >= 1.0:
        raise ConfigError(f"views_per_pair must be >= 1, got {views_per_pair}")
    for name, rate in (("cart_rate", cart_rate), ("purchase_rate", purchase_rate)):
        if not 0.0 <= rate <= 1.0:
            raise ConfigError(f"{name} must be in [0, 1], got {rate}")
    pairs = generate_interactions(
        n_users, n_items, n_pairs, feedback="binary", seed=seed, **pair_options
    )
    # A separate stream: the pairs stay exactly those of generate_interactions(seed=seed).
    rng = np.random.default_rng([seed, 1])
    users, items = pairs.users, pairs.items
    affinity = np.einsum("ij,ij->i", pairs.user_topics[users], pairs.item_topics[items])
    taste = affinity / np.maximum(pairs.user_topics.max(axis=1)[users], 1e-12)
    n_views = 1 + rng.poisson((views_per_pair - 1.0) * 2.0 * taste)
    carted = rng.random(users.size) < np.minimum(1.0, cart_rate * (0.25 + 1.5 * taste))
    bought = carted & (rng.random(users.size) < np.minimum(1.0, purchase_rate * (0.5 + taste)))

    per_pair = n_views + carted + bought
    pair_of_event = np.repeat(np.arange(users.size), per_pair)
    # Position of each event within its pair: views first, then the cart, then the purchase.
    position = np.arange(pair_of_event.size) - np.repeat(np.cumsum(per_pair) - per_pair, per_pair)
    kinds = np.where(position < n_views[pair_of_event], 0, 1).astype(np.int8)
    kinds[(position == per_pair[pair_of_event] - 1) & bought[pair_of_event]] = 2
    start = pairs.timestamps[pair_of_event]
    offsets = rng.integers(0, 3 * 86_400, pair_of_event.size)
    offsets[kinds == 1] = 3 * 86_400 + rng.integers(0, 86_400, int((kinds == 1).sum()))
    offsets[kinds == 2] = 4 * 86_400 + rng.integers(0, 86_400, int((kinds == 2).sum()))
    timestamps = start + offsets
    amounts = np.full(pair_of_event.size, np.nan, dtype=np.float32)
    if quantities:
        amounts[kinds == 2] = rng.geometric(0.75, int((kinds == 2).sum()))
    # The value a reader gives each pair with the default weights (view 1, cart 3, purchase 10).
    weights = np.array([1.0, 3.0, 10.0])[kinds] * np.where(np.isnan(amounts), 1.0, amounts)
    pairs.ratings = np.bincount(pair_of_event, weights, minlength=users.size).astype(np.float32)
    pairs.feedback = "events"
    order = np.argsort(timestamps, kind="stable")
    return SyntheticEventLog(
        users=users[pair_of_event][order],
        items=items[pair_of_event][order],
        events=kinds[order],
        quantities=amounts[order],
        timestamps=timestamps[order],
        pairs=pairs,
        has_quantities=quantities,
    )


# Rounds of drawing from the planted structure, then of uniform filling, for users whose count
# is not reached yet (uniform draws converge fast: a user holds at most max_user_fraction).
_STRUCTURED_ROUNDS = 4
_MAX_ROUNDS = 40


def _distinct(keys: np.ndarray) -> np.ndarray:
    """Sorted distinct values; sorting beats numpy 2's hash-based np.unique here by ~10x."""
    keys = np.sort(keys)
    keep = np.empty(keys.size, dtype=bool)
    keep[:1] = True
    np.not_equal(keys[1:], keys[:-1], out=keep[1:])
    return keys[keep]


def _check_arguments(
    n_users: int,
    n_items: int,
    n_interactions: int,
    n_topics: int,
    max_user_fraction: float,
    noise: float,
) -> None:
    if n_users < 1 or n_items < 2 or n_topics < 1:
        raise ConfigError(
            f"need n_users >= 1, n_items >= 2 and n_topics >= 1, got {n_users}, {n_items} "
            f"and {n_topics}"
        )
    if not 0.0 < max_user_fraction <= 1.0:
        raise ConfigError(f"max_user_fraction must be in (0, 1], got {max_user_fraction}")
    if not 0.0 <= noise <= 1.0:
        raise ConfigError(f"noise must be in [0, 1], got {noise}")
    capacity = n_users * max(1, int(n_items * max_user_fraction))
    if not n_users <= n_interactions <= min(capacity, n_users * n_items // 2):
        raise ConfigError(
            f"n_interactions must be between n_users ({n_users}) and "
            f"{min(capacity, n_users * n_items // 2)} (half the matrix, at most "
            f"max_user_fraction of the items per user), got {n_interactions}"
        )


def _user_counts(
    rng: np.random.Generator,
    n_users: int,
    n_items: int,
    n_interactions: int,
    exponent: float,
    minimum: int,
    max_fraction: float,
) -> np.ndarray:
    """Interactions per user: `minimum` each, the rest spread by Zipf activity, capped."""
    cap = max(1, int(n_items * max_fraction))
    minimum = max(1, min(minimum, n_interactions // n_users, cap))
    activity = np.empty(n_users)
    activity[rng.permutation(n_users)] = np.arange(1, n_users + 1) ** -float(exponent)
    counts = np.full(n_users, minimum, dtype=np.int64)
    remaining = n_interactions - counts.sum()
    # Capped users give their excess back to the others; a few rounds converge.
    while remaining > 0:
        open_users = counts < cap
        weights = np.where(open_users, activity, 0.0)
        counts += rng.multinomial(remaining, weights / weights.sum())
        over = np.maximum(counts - cap, 0)
        counts -= over
        remaining = int(over.sum())
    return counts


def _draw_items(
    rng: np.random.Generator,
    draws_per_user: np.ndarray,
    user_topics: np.ndarray,
    topic_items: np.ndarray,
    popularity: np.ndarray,
    noise: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(users, items) of `draws_per_user[u]` draws per user: a topic from the user's mixture
    (or, with probability `noise`, popularity alone), then an item of that topic.

    Counting draws with multinomials and shuffling the drawn items among a topic's draws is
    the same distribution as drawing one at a time, and runs in C at any size.
    """
    n_users, n_topics = user_topics.shape
    # Column n_topics is the noise "topic": popularity alone.
    mixture = np.hstack([user_topics * (1.0 - noise), np.full((n_users, 1), noise)])
    mixture /= mixture.sum(axis=1, keepdims=True)
    per_user_topic = rng.multinomial(draws_per_user, mixture)  # [n_users, n_topics + 1]
    users = []
    items = []
    for topic in range(n_topics + 1):
        counts = per_user_topic[:, topic]
        distribution = popularity if topic == n_topics else topic_items[topic]
        item_counts = rng.multinomial(int(counts.sum()), distribution)
        drawn = rng.permutation(np.repeat(np.arange(distribution.size), item_counts))
        users.append(np.repeat(np.arange(n_users, dtype=np.int64), counts))
        items.append(drawn)
    return np.concatenate(users), np.concatenate(items)


def main(argv: list[str] | None = None) -> None:
    """Command line: write synthetic interactions or an event log to a Parquet or CSV file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="ml-20m")
    parser.add_argument(
        "--output", required=True, help="file to write: .csv for CSV, anything else Parquet"
    )
    parser.add_argument(
        "--feedback",
        choices=(*FEEDBACK_KINDS, "events"),
        default="ratings",
        help="the value of each pair, or `events`: an event log (the shape's count is of pairs)",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--size",
        nargs=3,
        type=int,
        metavar=("USERS", "ITEMS", "INTERACTIONS"),
        help="any shape instead of --shape's; above "
        f"{STREAMED_ABOVE:,} interactions written block by block (`write_interactions`)",
    )
    arguments = parser.parse_args(argv)
    n_users, n_items, n_interactions = arguments.size or SHAPES[arguments.shape]
    started = time.perf_counter()
    if n_interactions > STREAMED_ABOVE:
        if arguments.feedback == "events":
            parser.error(f"--feedback events is generated in memory: at most {STREAMED_ABOVE:,}")
        try:
            rows = write_interactions(
                arguments.output,
                n_users,
                n_items,
                n_interactions,
                feedback=arguments.feedback,
                seed=arguments.seed,
            )
        except ConfigError as exc:
            parser.error(str(exc))
        print(
            f"wrote {rows:,} interactions ({n_users:,} users x {n_items:,} items) to "
            f"{arguments.output} in {time.perf_counter() - started:.1f} s, block by block"
        )
        return
    if arguments.feedback == "events":
        data = generate_event_log(n_users, n_items, n_interactions, seed=arguments.seed)
        what = f"{data.n_events:,} events on {n_interactions:,} (user, item) pairs"
        hint = "; train with data.columns: {event: event_type, quantity: quantity}"
    else:
        data = generate_interactions(
            n_users, n_items, n_interactions, feedback=arguments.feedback, seed=arguments.seed
        )
        what, hint = f"{data.n_interactions:,} interactions", ""
    if Path(arguments.output).suffix.lower() == ".csv":
        data.write_csv(arguments.output)
    else:
        data.write_parquet(arguments.output)
    print(
        f"wrote {what} ({n_users:,} users x {n_items:,} items) to {arguments.output} in "
        f"{time.perf_counter() - started:.1f} s{hint}"
    )


if __name__ == "__main__":
    main()


def random_model(
    n_users: int, n_items: int, *, n_factors: int = 64, seen_per_user: int = 10, seed: int = 0
):  # -> walsrec.models.recommender.RecommenderModel (imported lazily, as pandas above)
    """A recommender with random float32 factors and `seen_per_user` random seen items per user
    (ids `user<i>`, `item<j>`): the cost of scoring and ranking depends on the shape, not on
    what the factors learned, so benchmarks and tests of top-k use it at any size.
    """
    from walsrec.models.recommender import RecommenderModel

    rng = np.random.default_rng(seed)
    seen_per_user = min(seen_per_user, n_items)
    indices = np.sort(rng.integers(0, n_items, size=(n_users, seen_per_user), dtype=np.int32))
    seen = sp.csr_matrix(
        (
            np.ones(indices.size, dtype=np.float32),
            indices.ravel(),
            np.arange(0, indices.size + 1, max(seen_per_user, 1), dtype=np.int64)[: n_users + 1],
        ),
        shape=(n_users, n_items),
    )
    seen.sum_duplicates()
    seen.data[:] = 1.0
    return RecommenderModel(
        user_factors=rng.standard_normal((n_users, n_factors), dtype=np.float32) * 0.1,
        item_factors=rng.standard_normal((n_items, n_factors), dtype=np.float32) * 0.1,
        user_bias=None,
        item_bias=None,
        global_mean=0.0,
        user_ids=np.array([f"user{index}" for index in range(n_users)], dtype=object),
        item_ids=np.array([f"item{index}" for index in range(n_items)], dtype=object),
        seen=seen,
        item_popularity=np.asarray(seen.sum(axis=0)).ravel().astype(np.float64),
    )
