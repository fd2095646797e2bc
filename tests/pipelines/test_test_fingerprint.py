"""The evaluator's test-set fingerprint: the fast path hashes exactly the defined bytes."""

from __future__ import annotations

import numpy as np
import scipy.sparse

from steps.training import model_evaluator
from walsrec.data import Dataset


def _dataset(user_ids: list[str], item_ids: list[str], test) -> Dataset:
    return Dataset(
        user_ids=np.array(user_ids, dtype=object),
        item_ids=np.array(item_ids, dtype=object),
        train=test,
        validation=None,
        test=test,
        has_ratings=False,
    )


def test_fingerprint_equals_the_sorted_string_definition():
    """Prefix ids ("a" < "ab"), non-ASCII ids, several hash chunks, no test pairs, and ids with a
    control character (the string path then runs): always the same digest as the definition."""
    rng = np.random.default_rng(0)
    many_users = [str(value) for value in rng.permutation(3000)]
    many_items = [str(value) for value in rng.permutation(500)]
    cases = [
        (many_users, many_items, 0.17),  # 255,000 pairs: three chunks of the hash
        (["a", "ab", "abc", "b", "é", "z9", "Z", "a b"], ["x", "xy", "1", "10", "2", "ü"], 0.5),
        (["a\x01b", "a"], ["x", "y"], 1.0),
        (["u1", "u2"], ["i1"], 0.0),
    ]
    for user_ids, item_ids, density in cases:
        test = scipy.sparse.random(
            len(user_ids), len(item_ids), density=density, format="csr", random_state=2
        )
        dataset = _dataset(user_ids, item_ids, test)
        expected = model_evaluator._test_fingerprint_strings(dataset, test.tocoo())
        assert model_evaluator.test_fingerprint(dataset) == expected
