"""Validation NDCG@10 of WALS alone vs blended with each item-item model (walsrec.models.ensemble).

    python bench/quality/blend_quality.py

One fixed WALS config (32 factors, regularization 30, alpha 1, 10 epochs) per dataset; the
blend weight is the best of a small grid on the same validation split (an upper bound of what
tuning finds, for comparing the item-item models, not a test score). Datasets: ML-100K
(`../shared/data/ml-100k` or $WALSREC_ML100K, its configured validation split), synthetic
data of the lastfm-2k and ml-latest-small shapes and a 100,000-item catalogue (20% of each
one's interactions held out at random). About two minutes on the 2-core machine.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from walsrec.data import SplitConfig, build_dataset, load_source  # noqa: E402
from walsrec.evaluation.metrics import evaluate  # noqa: E402
from walsrec.models.ensemble import BlendConfig, blended_score_fn, item_item_matrix  # noqa: E402
from walsrec.models.wals import WALSConfig, train_wals  # noqa: E402
from walsrec.synthetic import SHAPES, generate_interactions  # noqa: E402

WALS = WALSConfig(n_factors=32, regularization=30.0, alpha=1.0, epochs=10, jit_compile=False)
WEIGHTS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)


def holdout(matrix: sp.csr_matrix, seed: int = 0) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """20% of the entries, at random, as validation."""
    coo = matrix.tocoo()
    held = np.random.default_rng(seed).random(coo.nnz) < 0.2
    return tuple(
        sp.csr_matrix((coo.data[m], (coo.row[m], coo.col[m])), shape=coo.shape)
        for m in (~held, held)
    )


def compare(name: str, train: sp.csr_matrix, validation: sp.csr_matrix) -> None:
    model = train_wals(train, WALS)
    cells = [f"{name} {train.shape[0]}x{train.shape[1]}"]
    cells.append(f"WALS {evaluate(model.score_users, train, validation)['ndcg@10']:.4f}")
    methods = ("ease", "knn") if train.shape[1] <= BlendConfig().max_items else ("knn",)
    for method in methods:
        started = time.perf_counter()
        matrix = item_item_matrix(train, BlendConfig(method=method, item_item_l2=300.0))
        seconds = time.perf_counter() - started
        best = max(
            (
                evaluate(
                    blended_score_fn(
                        model.score_users, train, matrix, BlendConfig(item_item_weight=weight)
                    ),
                    train,
                    validation,
                )["ndcg@10"],
                weight,
            )
            for weight in WEIGHTS
        )
        cells.append(
            f"+{method} {best[0]:.4f} (w={best[1]}, built in {seconds:.1f} s, {matrix.nnz:,} nnz)"
        )
    print(" | ".join(cells), flush=True)


def main() -> None:
    source = os.environ.get("WALSREC_ML100K", "../shared/data/ml-100k")
    dataset = build_dataset(
        load_source(source), split=SplitConfig(test_ratio=0.25, validation_ratio=0.2)
    )
    compare("ml-100k", dataset.train, dataset.validation)
    for shape, feedback in (("lastfm-2k", "counts"), ("ml-latest-small", "ratings")):
        data = generate_interactions(*SHAPES[shape], feedback=feedback, seed=0)
        compare(f"synthetic {shape} ({feedback})", *holdout(data.to_csr()))
    data = generate_interactions(20_000, 100_000, 1_000_000, feedback="binary", seed=0)
    compare("synthetic 10^5 items (binary)", *holdout(data.to_csr()))


if __name__ == "__main__":
    main()
