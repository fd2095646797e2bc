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

Run `python -m walsrec.synthetic --shape ml-20m --output data.parquet` to write a file that
`python run.py --data data.parquet` trains on.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from walsrec.errors import ConfigError

__all__ = ["FEEDBACK_KINDS", "SHAPES", "SyntheticData", "generate_interactions"]

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

    def write_parquet(self, path: str | Path) -> Path:
        """Write the interactions to a Parquet file (see `to_frame` for the columns)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = Path(path)
        table = pa.table(
            {
                "user_id": self.users.astype(np.int64),
                "item_id": self.items.astype(np.int64),
                "rating": self.ratings,
                "timestamp": self.timestamps,
            }
        )
        pq.write_table(table, path)
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
    if feedback not in FEEDBACK_KINDS:
        kinds = ", ".join(FEEDBACK_KINDS)
        raise ConfigError(f"feedback must be one of {kinds}, got {feedback!r}")
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
    # Zipf popularity over a random order of the items, so that item index says nothing.
    popularity = np.empty(n_items)
    popularity[rng.permutation(n_items)] = np.arange(1, n_items + 1) ** -float(item_exponent)
    popularity /= popularity.sum()
    user_topics = rng.dirichlet(np.full(n_topics, topic_concentration), size=n_users)
    item_topics = rng.dirichlet(np.full(n_topics, topic_concentration), size=n_items)
    # P(item | topic) proportional to popularity * item_topics[:, topic].
    topic_items = (popularity[:, np.newaxis] * item_topics).T  # [n_topics, n_items]
    topic_items /= topic_items.sum(axis=1, keepdims=True)

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
    """Command line: write synthetic interactions to a Parquet file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", choices=sorted(SHAPES), default="ml-20m")
    parser.add_argument("--output", required=True, help="Parquet file to write")
    parser.add_argument("--feedback", choices=FEEDBACK_KINDS, default="ratings")
    parser.add_argument("--seed", type=int, default=0)
    arguments = parser.parse_args(argv)
    n_users, n_items, n_interactions = SHAPES[arguments.shape]
    started = time.perf_counter()
    data = generate_interactions(
        n_users, n_items, n_interactions, feedback=arguments.feedback, seed=arguments.seed
    )
    data.write_parquet(arguments.output)
    print(
        f"wrote {data.n_interactions:,} interactions ({n_users:,} users x {n_items:,} items) to "
        f"{arguments.output} in {time.perf_counter() - started:.1f} s"
    )


if __name__ == "__main__":
    main()
