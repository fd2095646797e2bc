"""The test-set fingerprint: the fast path hashes exactly the defined bytes, and a saved dataset
carries its fingerprint so a cached split never hashes the test pairs again."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import scipy.sparse

from walsrec.data import Dataset
from walsrec.data import fingerprint as fingerprints


def _dataset(user_ids: list[str], item_ids: list[str], test) -> Dataset:
    return Dataset(
        user_ids=np.array(user_ids, dtype=object),
        item_ids=np.array(item_ids, dtype=object),
        train=test,
        validation=None,
        test=test,
        has_ratings=False,
    )


def _random_test(n_users: int, n_items: int, density: float, seed: int = 2):
    return scipy.sparse.random(n_users, n_items, density=density, format="csr", random_state=seed)


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
        test = _random_test(len(user_ids), len(item_ids), density)
        dataset = _dataset(user_ids, item_ids, test)
        expected = fingerprints._test_fingerprint_strings(dataset, test.tocoo())
        assert dataset.test_fingerprint() == expected
        assert fingerprints.test_fingerprint(dataset) == expected


def test_a_replaced_test_part_gets_a_new_fingerprint():
    users, items = [f"u{i}" for i in range(30)], [f"i{i}" for i in range(20)]
    dataset = _dataset(users, items, _random_test(30, 20, 0.2, seed=1))
    first = dataset.test_fingerprint()
    dataset.test = _random_test(30, 20, 0.2, seed=5)
    assert dataset.test_fingerprint() != first
    # The pairs in original ids: new vocabularies give a new fingerprint too.
    second = dataset.test_fingerprint()
    dataset.user_ids = np.array([f"x{i}" for i in range(30)], dtype=object)
    assert dataset.test_fingerprint() != second
    dataset.test = None
    assert dataset.test_fingerprint() == ""


def test_a_saved_dataset_carries_its_fingerprint_and_loading_does_not_rehash(tmp_path):
    users, items = [f"u{i}" for i in range(40)], [f"i{i}" for i in range(25)]
    dataset = _dataset(users, items, _random_test(40, 25, 0.3))
    dataset.save(tmp_path / "dataset")
    stored = json.loads((tmp_path / "dataset" / "metadata.json").read_text())["test_fingerprint"]
    assert stored == fingerprints._test_fingerprint_strings(dataset, dataset.test.tocoo())

    # In a fresh interpreter: the stored value is returned, and neither pyarrow nor pandas is
    # imported for it (a run whose split came from ZenML's cache stays free of both).
    probe = (
        "import sys; from walsrec.data import Dataset; "
        f"d = Dataset.load({str(tmp_path / 'dataset')!r}); "
        "print(d.test_fingerprint()); "
        "print(sorted(m for m in ('pyarrow', 'pandas') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out == [stored, "[]"]


def test_a_dataset_saved_without_a_fingerprint_computes_it(tmp_path):
    """Datasets saved before the fingerprint was stored still load and get the same digest."""
    users, items = [f"u{i}" for i in range(40)], [f"i{i}" for i in range(25)]
    dataset = _dataset(users, items, _random_test(40, 25, 0.3))
    dataset.save(tmp_path / "dataset")
    metadata_path = tmp_path / "dataset" / "metadata.json"
    metadata = json.loads(metadata_path.read_text())
    expected = metadata.pop("test_fingerprint")
    metadata_path.write_text(json.dumps(metadata))
    assert Dataset.load(tmp_path / "dataset").test_fingerprint() == expected
