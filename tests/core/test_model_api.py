"""The model class's library API (implicit's shape) on synthetic data beyond MovieLens."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

from walsrec.errors import DataError
from walsrec.models.fold_in import FoldIn
from walsrec.models.recommender import RecommenderModel, UnknownIdError
from walsrec.synthetic import generate_interactions

ROOT = Path(__file__).resolve().parents[2]
SETTINGS = {"n_factors": 12, "regularization": 0.5, "alpha": 2.0, "epochs": 6, "seed": 3}


def synthetic_matrix(n_users: int, n_items: int, n: int, seed: int, **options) -> sp.csr_matrix:
    data = generate_interactions(n_users, n_items, n, seed=seed, **options)
    return sp.csr_matrix((data.ratings, (data.users, data.items)), shape=(n_users, n_items))


@pytest.fixture(scope="module")
def matrix() -> sp.csr_matrix:
    # Play counts, 300 users x 160 items; item 7 and user 11 emptied (no interactions).
    counts = sp.lil_matrix(synthetic_matrix(300, 160, 6000, seed=5, feedback="counts"))
    counts[:, 7] = 0
    counts[11, :] = 0
    return sp.csr_matrix(counts)


@pytest.fixture(scope="module")
def model(matrix) -> RecommenderModel:
    users = [f"u{i}" for i in range(matrix.shape[0])]
    items = [f"i{i}" for i in range(matrix.shape[1])]
    return RecommenderModel.unfitted(SETTINGS).fit(matrix, user_ids=users, item_ids=items)


@pytest.fixture(scope="module")
def biased() -> RecommenderModel:
    ratings = synthetic_matrix(200, 90, 4000, seed=9, feedback="ratings")
    config = dict(SETTINGS, mode="explicit", use_biases=True, unobserved_weight=0.1)
    return RecommenderModel.unfitted(config).fit(ratings)


def test_recommend_one_user_or_many(model, matrix) -> None:
    ids, scores = model.recommend("u3", N=5)
    assert ids.shape == scores.shape == (5,)
    assert np.all(np.diff(scores) <= 0)
    seen = {f"i{i}" for i in matrix[3].indices}
    assert not seen & set(ids)  # liked items filtered by default
    # The same as ranking the model's own scores with the seen items removed.
    expected = model.score_users(np.array([3]))[0]
    expected[matrix[3].indices] = -np.inf
    assert list(ids) == [f"i{i}" for i in np.argsort(-expected, kind="stable")[:5]]
    batch_ids, batch_scores = model.recommend(["u3", "u8", "u3"], N=5)
    assert batch_ids.shape == (3, 5)
    assert list(batch_ids[0]) == list(ids) == list(batch_ids[2])
    np.testing.assert_allclose(batch_scores[0], scores, rtol=1e-6)  # BLAS: gemm vs gemv
    unfiltered, _ = model.recommend("u3", N=160, filter_already_liked_items=False)
    assert seen <= set(unfiltered) and len(unfiltered) == 160
    denied, _ = model.recommend("u3", N=5, filter_items=list(ids[:2]) + ["not-an-item"])
    assert not set(ids[:2]) & set(denied)
    with pytest.raises(UnknownIdError, match="user id 'nobody' is not known"):
        model.recommend("nobody")
    with pytest.raises(DataError, match="N must be an integer"):
        model.recommend("u3", N=0)


def test_a_batch_larger_than_the_catalogue_pads_rows_with_none(model, matrix) -> None:
    heavy = int(np.argmax(np.diff(matrix.indptr)))
    ids, scores = model.recommend([f"u{heavy}", "u0"], N=160)
    left = 160 - matrix[heavy].nnz
    assert ids[0, left - 1] is not None and ids[0, left] is None
    assert np.isneginf(scores[0, left:]).all()
    single, _ = model.recommend(f"u{heavy}", N=160)
    assert len(single) == left  # one user: only real items


def test_candidate_list_keeps_seen_items(model, matrix) -> None:
    seen = [f"i{i}" for i in matrix[3].indices[:3]]
    unseen = ["i100", "i101", "i102"]
    candidates = unseen[:2] + seen + unseen[2:]
    # Filtering liked items ranks them last with -inf; it does not drop them.
    ids, scores = model.recommend("u3", items=candidates, N=20)
    assert len(ids) == len(candidates)
    assert set(ids[:3]) == set(unseen) and list(ids[3:]) == seen
    assert np.isneginf(scores[3:]).all() and np.isfinite(scores[:3]).all()
    # Unfiltered (and rank): every candidate by its score.
    ranked, ranked_scores = model.rank("u3", candidates)
    full = model.score_users(np.array([3]))[0]
    positions = [int(item[1:]) for item in candidates]
    order = np.argsort(-full[positions], kind="stable")
    assert list(ranked) == [candidates[i] for i in order]
    np.testing.assert_allclose(ranked_scores, full[positions][order])
    # filter_items removes from the candidates; N cuts the list.
    ids, _ = model.recommend("u3", items=candidates, filter_items=unseen[:1], N=2)
    assert len(ids) == 2 and unseen[0] not in ids
    with pytest.raises(UnknownIdError, match="item id 'zzz'"):
        model.recommend("u3", items=["i1", "zzz"])
    batch, _ = model.recommend(["u3", "u4"], items=candidates, filter_already_liked_items=False)
    assert all(set(row) == set(candidates) for row in batch)


def test_recalculate_many_users_at_once_is_the_serving_fold_in(model, matrix) -> None:
    rows = matrix[[3, 20, 41]]
    ids, scores = model.recommend(
        ["u3", "stranger", "u41"], user_items=rows, N=4, recalculate_user=True
    )
    fold_in = FoldIn(model.config, model.item_factors, None, 0.0, model.item_popularity)
    for row, user in enumerate((3, 20, 41)):
        factors, _ = fold_in.solve(matrix[user].indices, matrix[user].data)
        expected = model.item_factors @ factors
        expected[matrix[user].indices] = -np.inf
        top = np.argsort(-expected, kind="stable")[:4]
        assert list(ids[row]) == [f"i{i}" for i in top]
        np.testing.assert_allclose(scores[row], expected[top], rtol=1e-5, atol=1e-6)
    # Interactions as id lists and {id: value} mappings give the same answer.
    as_lists = [
        {f"i{i}": float(v) for i, v in zip(matrix[u].indices, matrix[u].data, strict=True)}
        for u in (3, 20, 41)
    ]
    again, _ = model.recommend(["a", "b", "c"], user_items=as_lists, N=4, recalculate_user=True)
    np.testing.assert_array_equal(again, ids)
    with pytest.raises(DataError, match="needs user_items"):
        model.recommend("u3", recalculate_user=True)
    with pytest.raises(DataError, match="must be a CSR matrix"):
        model.recommend(["u3"], user_items=rows[:1].tocsc(), recalculate_user=True)
    with pytest.raises(DataError, match="shape 3 x 160, expected 2 x 160"):
        model.recommend(["u3", "u4"], user_items=rows, recalculate_user=True)


def test_similar_items_and_users(model) -> None:
    ids, scores = model.similar_items("i3", N=6)
    assert ids[0] == "i3" and scores[0] == pytest.approx(1.0, abs=1e-5)
    assert np.all(np.diff(scores) <= 1e-6)
    batch, _ = model.similar_items(["i3", "i9"], N=6, filter_items=["i3"])
    assert batch.shape == (2, 6) and "i3" not in batch
    subset = ["i1", "i2", "i4"]
    chosen, _ = model.similar_items(["i3", "i9"], N=10, items_subset=subset)
    assert all(set(row) == set(subset) for row in chosen)
    users, user_scores = model.similar_users(["u5", "u6"], N=4, filter_users=["u0"])
    assert users[:, 0].tolist() == ["u5", "u6"] and "u0" not in users
    assert user_scores.shape == (2, 4)
    # Recalculating an item from its users gives its neighbours without its stored factors.
    column = model.seen.T.tocsr()[[3]]
    recalculated, _ = model.similar_items(["new"], N=6, item_users=column, recalculate_item=True)
    assert recalculated.shape == (1, 6)


def test_rows_without_interactions_are_never_neighbours(model) -> None:
    assert not model.item_factors[7].any() and not model.user_factors[11].any()
    neighbours, _ = model.similar_items([f"i{i}" for i in range(40)], N=10)
    assert "i7" not in neighbours
    assert "u11" not in model.similar_users([f"u{i}" for i in range(40)], N=10)[0]
    # And have none themselves.
    assert len(model.similar_items("i7")[0]) == 0


@pytest.fixture(scope="module")
def blended(model) -> RecommenderModel:
    from walsrec.models.ensemble import BlendConfig, blend_model

    return blend_model(model, BlendConfig(item_item_weight=0.3, method="knn"))


@pytest.mark.parametrize("which", ["model", "biased", "blended"])
def test_explain_contributions_sum_to_the_score(which, request) -> None:
    subject = request.getfixturevalue(which)
    user, row = subject.user_ids[4], subject.seen[4]
    ids, scores = subject.recommend(
        user, user_items=row, N=3, recalculate_user=True, filter_already_liked_items=False
    )
    explanation = subject.explain(user, ids[0], N=None)
    values = [value for _, value in explanation.contributions]
    assert explanation.score == pytest.approx(float(scores[0]), abs=1e-4)
    assert sum(values) == pytest.approx(explanation.score - explanation.non_item_terms, abs=1e-9)
    assert values == sorted(values, reverse=True)
    assert {item for item, _ in explanation.contributions} == {
        str(subject.item_ids[i]) for i in row.indices
    }
    if which != "biased":
        assert explanation.non_item_terms == 0.0  # no biases: every term is an item's
    else:
        assert explanation.non_item_terms != 0.0
    top = subject.explain(user, ids[0], N=2)
    assert top.contributions == explanation.contributions[:2]


def test_partial_fit_users_and_items(matrix) -> None:
    model = RecommenderModel.unfitted(SETTINGS).fit(matrix)
    n_users, n_items = model.n_users, model.n_items
    liked = [str(i) for i in matrix[1].indices]
    model.partial_fit_users(["0", "new-user"], [liked, liked])
    assert model.n_users == n_users + 1 and model.user_ids[-1] == "new-user"
    np.testing.assert_array_equal(model.user_factors[0], model.user_factors[-1])
    assert sorted(model.seen[0].indices) == sorted(matrix[1].indices)
    counts = np.bincount(model.seen.indices, minlength=n_items)
    np.testing.assert_array_equal(model.item_popularity, counts)
    expected, _ = model.fold_in().solve(matrix[1].indices)
    np.testing.assert_array_equal(model.user_factors[0], expected)
    # A new item liked by users 0..19 is folded in from them and recommended to similar users.
    model.partial_fit_items("new-item", [[str(u) for u in range(20)]])
    assert model.n_items == n_items + 1 and model.item_ids[-1] == "new-item"
    assert model.seen[:, n_items].nnz == 20
    assert model.item_factors[-1].any()
    assert "new-item" in model.similar_items("new-item", N=3)[0]
    with pytest.raises(DataError, match="distinct"):
        model.partial_fit_users(["a", "a"], [liked, liked])


@pytest.mark.parametrize("target", ["folder", "model.zip", "model.npz", "file object"])
def test_save_and_load_folder_or_one_file(model, tmp_path, target) -> None:
    if target == "file object":
        buffer = io.BytesIO()
        model.save(buffer)
        buffer.seek(0)
        loaded = RecommenderModel.load(buffer)
    else:
        path = tmp_path / target
        model.save(path)
        assert path.is_dir() == (target == "folder")
        loaded = RecommenderModel.load(path)
    np.testing.assert_array_equal(loaded.item_factors, model.item_factors)
    assert loaded.recommend("u3")[0].tolist() == model.recommend("u3")[0].tolist()


def test_one_file_holds_the_folder_files_and_is_verified(model, tmp_path) -> None:
    path = tmp_path / "model.zip"
    model.save(path)
    with zipfile.ZipFile(path) as archive:
        names = set(archive.namelist())
        meta = json.loads(archive.read("metadata.json"))
    assert names == set(meta["checksums"]) | {"metadata.json"}
    edited = tmp_path / "edited.zip"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(edited, "w") as target:
        for name in source.namelist():
            data = source.read(name)
            if name == "item_ids.json":
                data = data.replace(b'"i1"', b'"i9999"')
            target.writestr(name, data)
    with pytest.raises(DataError, match="edited.zip:.*item_ids.json: SHA-256 does not match"):
        RecommenderModel.load(edited)
    hostile = tmp_path / "hostile.zip"
    with zipfile.ZipFile(hostile, "w") as archive:
        archive.writestr("../metadata.json", "{}")
    with pytest.raises(DataError, match="unexpected member '../metadata.json'"):
        RecommenderModel.load(hostile)
    with pytest.raises(DataError, match="not a walsrec model archive"):
        RecommenderModel.load(_garbage(tmp_path))


def _garbage(folder: Path) -> Path:
    path = folder / "garbage.zip"
    path.write_bytes(b"not a zip")
    return path


def test_unfitted_model_saves_loads_and_refuses_queries(tmp_path) -> None:
    model = RecommenderModel.unfitted({"n_factors": 5, "use_biases": True})
    assert not model.fitted
    model.save(tmp_path / "empty.npz")
    loaded = RecommenderModel.load(tmp_path / "empty.npz")
    assert not loaded.fitted and loaded.config == model.config and loaded.n_factors == 5
    with pytest.raises(DataError, match="not fitted"):
        loaded.recommend("x")
    with pytest.raises(Exception, match="n_factor"):
        RecommenderModel.unfitted({"n_factor": 5})


def test_inference_never_imports_tensorflow(model, tmp_path) -> None:
    model.save(tmp_path / "model.zip")
    script = f"""
import sys
from walsrec.models.recommender import RecommenderModel
model = RecommenderModel.load({str(tmp_path / "model.zip")!r})
model.recommend(["u1", "u2"], N=3)
model.recommend("new", user_items=["i1", "i2"], recalculate_user=True)
model.similar_items("i1"); model.similar_users("u1"); model.rank("u1", ["i1", "i2"])
model.explain("u1", "i2")
model.partial_fit_users(["new"], [["i1"]]); model.partial_fit_items(["j"], [["u1"]])
assert "tensorflow" not in sys.modules, "tensorflow was imported"
print("ok")
"""
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_the_readme_library_snippet_runs_in_python_c(tmp_path) -> None:
    # What a user copies: the README's "Use it as a library" snippet, in a plain `python -c`.
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use it as a library", 1)[1]
    snippet = section.split("```python\n", 1)[1].split("```", 1)[0]
    done = subprocess.run(
        [sys.executable, "-c", snippet],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "array([" in done.stdout and (tmp_path / "model.zip").is_file()


def test_a_blended_model_scores_folded_in_users_with_their_item_sets(blended) -> None:
    # score_folded adds the item-item part from the given items, as score_users does from the
    # training items: with the stored factors, both formulas give the same scores.
    users = np.array([3, 8])
    stored = blended.score_users(users)
    bias = None if blended.user_bias is None else blended.user_bias[users]
    folded = blended.score_folded(blended.user_factors[users], bias, blended.seen[users])
    np.testing.assert_allclose(folded, stored, rtol=1e-6, atol=1e-6)
    assert blended.blended and not np.allclose(
        folded, blended.score_folded(blended.user_factors[users], bias, blended.seen[[8, 3]])
    )
