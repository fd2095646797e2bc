"""Metrics against hand-computed values and against a straightforward per-user reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.sparse

from walsrec.errors import ConfigError, DataError
from walsrec.evaluation.metrics import (
    RANKING_METRICS,
    evaluate,
    ranking_metrics,
    rating_metrics,
    sample_users,
)

N_ITEMS = 6


def relevance(rows: list[list[int]], n_items: int = N_ITEMS) -> scipy.sparse.csr_matrix:
    """CSR with a 1 at every listed (user, item)."""
    dense = np.zeros((len(rows), n_items))
    for user, items in enumerate(rows):
        dense[user, items] = 1.0
    return scipy.sparse.csr_matrix(dense)


def reference_ranking_metrics(recommended, relevant, k):
    """The definitions of docs/metrics.md, one user at a time in plain Python."""
    totals = dict.fromkeys(("precision", "recall", "ndcg", "map", "hit_rate"), 0.0)
    covered = set()
    n_evaluated = 0
    for user in range(relevant.shape[0]):
        relevant_items = set(relevant[user].indices[relevant[user].data != 0].tolist())
        if not relevant_items:
            continue
        n_evaluated += 1
        top = [int(item) for item in recommended[user, :k]]
        covered.update(item for item in top if item >= 0)
        hit_positions = [p for p, item in enumerate(top, start=1) if item in relevant_items]
        n_ideal = min(len(relevant_items), k)
        dcg = sum(1 / math.log2(p + 1) for p in hit_positions)
        idcg = sum(1 / math.log2(p + 1) for p in range(1, n_ideal + 1))
        average_precision = sum(
            (sum(1 for item in top[:p] if item in relevant_items) / p) for p in hit_positions
        )
        totals["precision"] += len(hit_positions) / k
        totals["recall"] += len(hit_positions) / len(relevant_items)
        totals["ndcg"] += dcg / idcg
        totals["map"] += average_precision / n_ideal
        totals["hit_rate"] += 1.0 if hit_positions else 0.0
    result = {f"{name}@{k}": total / n_evaluated for name, total in totals.items()}
    result[f"coverage@{k}"] = len(covered) / relevant.shape[1]
    result["n_users_evaluated"] = n_evaluated
    return result


# The hand example used by several tests: 4 users, 6 items, k = 3.
HAND_RELEVANT = relevance([[0, 2], [1, 3, 5], [], [4]])
HAND_RECOMMENDED = np.array(
    [
        [0, 1, 2],  # user 0: hits at positions 1 and 3 (items 0, 2) of 2 relevant
        [0, 5, -1],  # user 1: hit at position 2 (item 5) of 3 relevant; padding at the end
        [3, 4, 5],  # user 2: no relevant item -> ignored, also for coverage
        [1, 2, 3],  # user 3: no hit (relevant item 4)
    ]
)


def test_ranking_metrics_hand_computed():
    result = ranking_metrics(HAND_RECOMMENDED, HAND_RELEVANT, 3)
    assert set(result) == {f"{name}@3" for name in RANKING_METRICS} | {"n_users_evaluated"}
    assert result["n_users_evaluated"] == 3  # users 0, 1, 3
    # precision: user 0 2/3, user 1 1/3, user 3 0 -> (2/3 + 1/3 + 0) / 3 = 1/3
    assert result["precision@3"] == pytest.approx(1 / 3, rel=1e-12)
    # recall: user 0 2/2, user 1 1/3, user 3 0 -> (1 + 1/3 + 0) / 3 = 4/9
    assert result["recall@3"] == pytest.approx(4 / 9, rel=1e-12)
    # ndcg: user 0 hits at 1 and 3 of 2 relevant: (1 + 1/log2(4)) / (1 + 1/log2(3));
    # user 1 hit at 2 of 3 relevant: (1/log2(3)) / (1 + 1/log2(3) + 1/log2(4)); user 3: 0
    ndcg_user0 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    ndcg_user1 = (1 / math.log2(3)) / (1 + 1 / math.log2(3) + 1 / math.log2(4))
    assert result["ndcg@3"] == pytest.approx((ndcg_user0 + ndcg_user1 + 0) / 3, rel=1e-12)
    # map: user 0 (1/1 + 2/3) / min(2, 3) = 5/6; user 1 (1/2) / min(3, 3) = 1/6; user 3: 0
    # -> (5/6 + 1/6 + 0) / 3 = 1/3
    assert result["map@3"] == pytest.approx(1 / 3, rel=1e-12)
    # hit_rate: users 0 and 1 of 3
    assert result["hit_rate@3"] == pytest.approx(2 / 3, rel=1e-12)
    # coverage: {0, 1, 2} | {0, 5} | {1, 2, 3} = {0, 1, 2, 3, 5} -> 5 of 6 items
    assert result["coverage@3"] == pytest.approx(5 / 6, rel=1e-12)


def test_only_the_first_k_columns_count():
    wider = np.array([[0, 1, 2, 3], [0, 5, -1, 1], [3, 4, 5, 0], [1, 2, 3, 4]])
    narrow = ranking_metrics(HAND_RECOMMENDED, HAND_RELEVANT, 3)
    assert ranking_metrics(wider, HAND_RELEVANT, 3) == narrow
    # k = 1: user 0 hits at position 1; users 1 and 3 do not.
    # precision (1 + 0 + 0) / 3; recall (1/2) / 3; ndcg 1/3; map (1/1)/min(2,1) / 3 = 1/3
    top1 = ranking_metrics(wider, HAND_RELEVANT, 1)
    assert top1["precision@1"] == pytest.approx(1 / 3)
    assert top1["recall@1"] == pytest.approx(1 / 6)
    assert top1["ndcg@1"] == pytest.approx(1 / 3)
    assert top1["map@1"] == pytest.approx(1 / 3)
    assert top1["coverage@1"] == pytest.approx(2 / 6)  # items 0 and 1


def test_users_without_relevant_items_are_ignored():
    base = ranking_metrics(HAND_RECOMMENDED, HAND_RELEVANT, 3)
    # Extra users without relevant items, recommending items nobody else got (4), change nothing.
    extra_relevant = scipy.sparse.vstack(
        [HAND_RELEVANT, scipy.sparse.csr_matrix((2, N_ITEMS))], format="csr"
    )
    extra_recommended = np.vstack([HAND_RECOMMENDED, [[4, 0, 1], [4, 5, 3]]])
    assert ranking_metrics(extra_recommended, extra_relevant, 3) == base
    # An explicit stored zero is not a relevant item either.
    with_zero = scipy.sparse.csr_matrix(
        (np.array([1, 1, 1, 1, 1, 0, 1]), np.array([0, 2, 1, 3, 5, 3, 4]), [0, 2, 5, 6, 7]),
        shape=(4, N_ITEMS),
    )  # HAND_RELEVANT plus a stored 0 at (user 2, item 3)
    assert with_zero.nnz == HAND_RELEVANT.nnz + 1
    assert ranking_metrics(HAND_RECOMMENDED, with_zero, 3) == base


def test_padding_never_counts_as_a_hit():
    # Keys are user * n_items + item: for user 1, the padding -1 would alias (user 0, item 5),
    # which is relevant for user 0. It must not count for user 1.
    relevant = relevance([[5], [0]])
    recommended = np.array([[5, -1], [-1, -1]])
    result = ranking_metrics(recommended, relevant, 2)
    # user 0: hit at 1 -> precision 1/2, recall 1, ndcg 1, map 1; user 1: nothing
    assert result["precision@2"] == pytest.approx(1 / 4)
    assert result["recall@2"] == pytest.approx(1 / 2)
    assert result["ndcg@2"] == pytest.approx(1 / 2)
    assert result["map@2"] == pytest.approx(1 / 2)
    assert result["hit_rate@2"] == pytest.approx(1 / 2)
    assert result["coverage@2"] == pytest.approx(1 / 6)


def test_perfect_ranking():
    # user 0: 2 relevant, both on top; user 1: 5 relevant, the top 3 are all relevant.
    relevant = relevance([[1, 4], [0, 1, 2, 3, 5]])
    recommended = np.array([[4, 1, 0], [5, 2, 0]])
    result = ranking_metrics(recommended, relevant, 3)
    assert result["ndcg@3"] == pytest.approx(1.0, rel=1e-12)
    assert result["map@3"] == pytest.approx(1.0, rel=1e-12)
    # precision = min(|rel|, k) / k: user 0 2/3, user 1 3/3 -> (2/3 + 1) / 2 = 5/6
    assert result["precision@3"] == pytest.approx(5 / 6, rel=1e-12)
    # recall: user 0 2/2, user 1 3/5 -> (1 + 3/5) / 2 = 4/5
    assert result["recall@3"] == pytest.approx(4 / 5, rel=1e-12)
    assert result["hit_rate@3"] == 1.0


def test_matches_per_user_reference_on_random_data():
    rng = np.random.default_rng(42)
    n_users, n_items, k = 200, 300, 10
    relevant = scipy.sparse.random(n_users, n_items, density=0.03, format="csr", random_state=7)
    keep_user = np.arange(n_users) % 9 != 0  # every 9th user has no relevant item
    relevant = scipy.sparse.csr_matrix(scipy.sparse.diags(keep_user.astype(float)) @ relevant)
    relevant.eliminate_zeros()
    # Random distinct items per user, biased towards relevant ones so that hits are common.
    bias = relevant.toarray() * rng.random((n_users, n_items)) * 3
    recommended = np.argsort(-(rng.random((n_users, n_items)) + bias), axis=1)[:, :15]
    # Shorter lists padded with -1 for some users.
    lengths = rng.integers(0, 16, size=n_users)
    recommended[np.arange(15)[None, :] >= lengths[:, None]] = -1
    expected = reference_ranking_metrics(recommended, relevant, k)
    result = ranking_metrics(recommended, relevant, k)
    assert set(result) == set(expected)
    assert expected["hit_rate@10"] > 0.3  # the data does exercise hits
    for name, value in expected.items():
        assert result[name] == pytest.approx(value, rel=0, abs=1e-12), name


def test_ranking_metrics_input_errors():
    with pytest.raises(ConfigError):
        ranking_metrics(HAND_RECOMMENDED, HAND_RELEVANT, 0)
    with pytest.raises(DataError, match="at least k=4 columns"):
        ranking_metrics(HAND_RECOMMENDED, HAND_RELEVANT, 4)
    with pytest.raises(DataError, match="expected 4 rows"):
        ranking_metrics(HAND_RECOMMENDED[:3], HAND_RELEVANT, 3)
    with pytest.raises(DataError, match="outside"):
        ranking_metrics(np.where(HAND_RECOMMENDED == 5, 6, HAND_RECOMMENDED), HAND_RELEVANT, 3)
    with pytest.raises(DataError, match="recommended twice"):
        ranking_metrics(np.array([[0, 0, 1], [1, 2, 3], [0, 1, 2], [3, 4, 5]]), HAND_RELEVANT, 3)
    with pytest.raises(DataError, match="integer"):
        ranking_metrics(HAND_RECOMMENDED.astype(float), HAND_RELEVANT, 3)
    with pytest.raises(DataError, match="no user has a relevant item"):
        ranking_metrics(HAND_RECOMMENDED, scipy.sparse.csr_matrix((4, N_ITEMS)), 3)


def test_rating_metrics_hand_computed():
    # errors: 3 - 4 = -1, 2.5 - 2 = 0.5, 5 - 5 = 0
    result = rating_metrics(np.array([3.0, 2.5, 5.0]), np.array([4.0, 2.0, 5.0]))
    # rmse = sqrt((1 + 0.25 + 0) / 3) = sqrt(5/12); mae = (1 + 0.5 + 0) / 3 = 1/2
    assert result == {"rmse": pytest.approx(math.sqrt(5 / 12)), "mae": pytest.approx(0.5)}


def test_rating_metrics_errors():
    with pytest.raises(DataError, match="no .* pairs"):
        rating_metrics(np.array([]), np.array([]))
    with pytest.raises(DataError, match="predictions are NaN or infinite"):
        rating_metrics(np.array([1.0, np.nan]), np.array([1.0, 2.0]))
    with pytest.raises(DataError, match="predictions are NaN or infinite"):
        rating_metrics(np.array([np.inf, 1.0]), np.array([1.0, 2.0]))
    with pytest.raises(DataError, match="shape"):
        rating_metrics(np.array([1.0, 2.0]), np.array([1.0]))


# Tiny split for evaluate: 4 users, 6 items. Scores are exact binary fractions.
EVAL_SCORES = (
    np.array(
        [
            [8, 7, 6, 5, 4, 3],  # user 0
            [1, 2, 3, 4, 5, 6],  # user 1
            [4, 4, 4, 4, 4, 4],  # user 2: all tied
            [1, 1, 1, 1, 1, 1],  # user 3: no test item
        ]
    )
    / 8
)
EVAL_TRAIN = relevance([[0, 1], [5], [2], [0]])
EVAL_TEST = scipy.sparse.csr_matrix(
    (
        np.array([4.0, 3.0, 5.0, 2.0]),
        (np.array([0, 0, 1, 2]), np.array([2, 5, 4, 3])),
    ),
    shape=(4, N_ITEMS),
)


def test_evaluate_on_a_tiny_split():
    scored_users = []

    def score_fn(users):
        scored_users.extend(users.tolist())
        return EVAL_SCORES[users]

    predictions = np.zeros((4, N_ITEMS))
    predictions[[0, 0, 1, 2], [2, 5, 4, 3]] = [3.5, 2.0, 2.5, 2.5]

    def predict_fn(users, items):
        return predictions[users, items]

    result = evaluate(score_fn, EVAL_TRAIN, EVAL_TEST, k=2, predict_fn=predict_fn, chunk_size=2)
    assert scored_users == [0, 1, 2]  # only users with a test item
    # Top-2 without train items: user 0 [2, 3] (0, 1 seen), user 1 [4, 3] (5 seen),
    # user 2 [0, 1] (all tied, 2 seen -> lowest indices).
    # user 0: relevant {2, 5}, hit at 1 -> precision 1/2, recall 1/2,
    #   ndcg 1 / (1 + 1/log2(3)), map (1/1) / min(2, 2) = 1/2
    # user 1: relevant {4}, hit at 1 -> precision 1/2, recall 1, ndcg 1, map 1
    # user 2: relevant {3}, no hit -> all 0
    assert result["n_users_evaluated"] == 3
    assert result["precision@2"] == pytest.approx((1 / 2 + 1 / 2 + 0) / 3)
    assert result["recall@2"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert result["ndcg@2"] == pytest.approx((1 / (1 + 1 / math.log2(3)) + 1 + 0) / 3)
    assert result["map@2"] == pytest.approx((1 / 2 + 1 + 0) / 3)
    assert result["hit_rate@2"] == pytest.approx(2 / 3)
    assert result["coverage@2"] == pytest.approx(5 / 6)  # {2, 3} | {4, 3} | {0, 1}
    # errors: 3.5 - 4 = -0.5, 2 - 3 = -1, 2.5 - 5 = -2.5, 2.5 - 2 = 0.5
    # rmse = sqrt((0.25 + 1 + 6.25 + 0.25) / 4) = sqrt(7.75 / 4); mae = 4.5 / 4
    assert result["rmse"] == pytest.approx(math.sqrt(7.75 / 4))
    assert result["mae"] == pytest.approx(4.5 / 4)


def test_evaluate_without_predict_fn_has_no_rating_metrics():
    result = evaluate(lambda users: EVAL_SCORES[users], EVAL_TRAIN, EVAL_TEST, k=2)
    assert "rmse" not in result and "mae" not in result
    assert result["ndcg@2"] == pytest.approx((1 / (1 + 1 / math.log2(3)) + 1) / 3)


def test_evaluate_input_errors():
    def score_fn(users):
        return EVAL_SCORES[users]

    with pytest.raises(DataError, match="same user and item"):
        evaluate(score_fn, EVAL_TRAIN[:3], EVAL_TEST, k=2)
    with pytest.raises(DataError, match="no entries"):
        evaluate(score_fn, EVAL_TRAIN, scipy.sparse.csr_matrix((4, N_ITEMS)), k=2)
    duplicated = scipy.sparse.csr_matrix(
        (np.array([4.0, 3.0]), np.array([1, 1]), np.array([0, 0, 2, 2, 2])), shape=(4, N_ITEMS)
    )
    with pytest.raises(DataError, match=r"\(user 1, item 1\) more than once"):
        evaluate(score_fn, EVAL_TRAIN, duplicated, k=2)
    with pytest.raises(DataError, match="NaN or infinite"):
        evaluate(
            score_fn,
            EVAL_TRAIN,
            EVAL_TEST,
            k=2,
            predict_fn=lambda users, items: np.full(len(users), np.nan),
        )
    with pytest.raises(DataError, match="predictions for"):
        evaluate(score_fn, EVAL_TRAIN, EVAL_TEST, k=2, predict_fn=lambda users, items: np.zeros(1))


def test_sample_users_keeps_whole_rows_of_a_fixed_sample():
    from walsrec import synthetic

    data = synthetic.generate_interactions(3_000, 500, 40_000, feedback="binary", seed=3)
    held_out = scipy.sparse.csr_matrix(
        (np.ones(data.users.size, np.float32), (data.users, data.items)), shape=(3_000, 500)
    )
    sample = sample_users(held_out, 250)
    assert sample.shape == held_out.shape
    kept = np.flatnonzero(np.diff(sample.indptr))
    assert kept.size == 250
    # Every kept user has all its entries, and nobody else has any.
    assert (sample[kept] != held_out[kept]).nnz == 0
    assert sample.nnz == held_out[kept].nnz
    # The same matrix, size and seed: the same users; another seed: others.
    assert np.array_equal(np.flatnonzero(np.diff(sample_users(held_out, 250).indptr)), kept)
    other = np.flatnonzero(np.diff(sample_users(held_out, 250, seed=1).indptr))
    assert not np.array_equal(other, kept)
    # Spread over all users, not the first ones.
    assert kept.max() > 2_000 and kept.min() < 1_000


def test_sample_users_of_at_least_every_user_is_the_whole_part():
    held_out = scipy.sparse.csr_matrix(np.eye(5, dtype=np.float32))
    for max_users in (None, 5, 50):
        assert (sample_users(held_out, max_users) != held_out).nnz == 0
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(ConfigError, match="max_users"):
            sample_users(held_out, bad)
