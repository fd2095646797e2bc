"""Quality benchmark on MovieLens-100K: our tuned WALS vs `implicit`'s tuned ALS vs popularity.

python bench/quality/run_bench.py [--ratings ../shared/data/ml-100k/u.data] [--n-trials 50]

Protocol (Microsoft Recommenders' ML-100K benchmark): a 75/25 per-user stratified split with
seed 42 (make_split.py), top-10, items seen in training removed. Both models are tuned by
Optuna (seeded TPE, the same number of trials) on the same validation split carved from the
training part (20% per user), never on test; each best configuration is retrained on the whole
training part and evaluated once on test. Rating prediction: our explicit biased WALS averaged
over its posterior (configs/tune_rating.yaml), tuned on validation RMSE (implicit's ALS predicts
preferences, not ratings).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # implicit warns (and slows) otherwise
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import yaml  # noqa: E402
from make_split import COLUMNS, split_frame  # noqa: E402

from walsrec.data import SplitConfig, build_dataset, load_source  # noqa: E402
from walsrec.evaluation.metrics import evaluate  # noqa: E402
from walsrec.models.popularity import PopularityModel  # noqa: E402
from walsrec.profile import profile_dataset  # noqa: E402
from walsrec.tuning import (  # noqa: E402
    TuningConfig,
    ValidationObjective,
    base_values,
    best_trial_params,
    open_storage,
    prepare_study,
    run_worker,
    split_params,
    train_best_model,
    validation_folds,
)

RANKING = ("ndcg@10", "precision@10", "recall@10", "map@10")


def load_split(ratings: Path, workdir: Path):
    """The dataset: TRAIN (with a 20% validation part) and TEST files, as the pipeline reads."""
    import pandas as pd

    frame = pd.read_csv(ratings, sep="\t", names=COLUMNS, dtype=str)
    train, test = split_frame(frame, 0.25, 42)
    train.to_csv(workdir / "TRAIN.tsv", sep="\t", header=False, index=False)
    test.to_csv(workdir / "TEST.tsv", sep="\t", header=False, index=False)
    return build_dataset(
        load_source(str(workdir / "TRAIN.tsv")),
        split=SplitConfig(method="file", validation_ratio=0.2, seed=42),
        test_interactions=load_source(str(workdir / "TEST.tsv")),
    )


def tune_ours(
    dataset, config_path: Path, n_trials: int, workdir: Path, study: str | None = None
) -> tuple[dict, dict]:
    """Tune with the pipeline's own core and config; returns (test metrics, best params).

    As in the pipeline, the config's `auto` base values and relative ranges are fitted to the
    profile of the tuning training part.
    """
    parameters = yaml.safe_load(config_path.read_text())["parameters"]
    tuning = {**parameters["tuning"], "n_trials": n_trials, "timeout": None, "progress": False}
    blend, bayes = parameters.get("blend"), parameters.get("bayes")
    config, wals, _ = TuningConfig.from_dict(tuning).fitted(
        parameters["wals"], profile_dataset(dataset), blend, bayes
    )
    storage = open_storage(f"sqlite:///{workdir / (config_path.stem + '.db')}")
    name = study or f"bench-{config_path.stem}"
    prepare_study(
        storage, name, config, config.search_space.baseline(base_values(wals, blend, bayes))
    )
    objective = ValidationObjective(
        validation_folds(
            dataset.train,
            dataset.validation,
            config.validation_folds,
            max_scores=config.max_validation_scores,
        ),
        config.search_space,
        config.objective,
        wals,
        blend,
        bayes,
        report_every=config.report_every,
        report_from=config.first_report_epoch,
    )
    run_worker(storage, name, objective, config)
    best = best_trial_params(storage, name, config)
    wals, blend, bayes = split_params(best["best_params"], wals, blend, bayes)
    model, full = train_best_model(dataset, wals, blend, bayes)
    predict = model.predict if wals.mode == "explicit" else None
    return evaluate(model.score_users, full.train, full.test, 10, predict_fn=predict), best


def tune_implicit(dataset, n_trials: int) -> tuple[dict, dict]:
    """implicit's ALS tuned by Optuna TPE on the same validation split, same budget: factors,
    regularization, alpha, iterations and the input (raw values, BM25-weighted or binary, as
    implicit's own examples do for play counts)."""
    from implicit.cpu.als import AlternatingLeastSquares
    from implicit.nearest_neighbours import bm25_weight

    def weighted(matrix, weighting: str):
        matrix = sp.csr_matrix(matrix, dtype=np.float32)
        if weighting == "bm25":
            return sp.csr_matrix(bm25_weight(matrix, K1=100, B=0.8), dtype=np.float32)
        if weighting == "binary":
            matrix = matrix.copy()
            matrix.data[:] = 1.0
        return matrix

    def fit(train, params):
        model = AlternatingLeastSquares(
            factors=params["factors"],
            regularization=params["regularization"],
            alpha=params["alpha"],
            iterations=params["iterations"],
            random_state=42,
        )
        model.fit(weighted(train, params["weighting"]), show_progress=False)
        return lambda users: model.user_factors[users] @ model.item_factors.T

    def objective(trial) -> float:
        params = {
            "factors": trial.suggest_int("factors", 16, 128, step=8),
            "regularization": trial.suggest_float("regularization", 1e-3, 100.0, log=True),
            "alpha": trial.suggest_float("alpha", 0.1, 50.0, log=True),
            "iterations": trial.suggest_int("iterations", 5, 30),
            "weighting": trial.suggest_categorical("weighting", ["raw", "bm25", "binary"]),
        }
        return evaluate(fit(dataset.train, params), dataset.train, dataset.validation, 10)[
            "ndcg@10"
        ]

    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=42, n_startup_trials=10)
    )
    study.optimize(objective, n_trials=n_trials)
    full = (dataset.train + dataset.validation).tocsr()
    return evaluate(fit(full, study.best_params), full, dataset.test, 10), study.best_params


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ratings", type=Path, default=ROOT.parent / "shared/data/ml-100k/u.data")
    parser.add_argument("--n-trials", type=int, default=50)
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="walsrec-bench-quality-"))
    dataset = load_split(args.ratings, workdir)

    rows, seconds = {}, {}
    started = time.perf_counter()
    rows["ours (WALS + item-item)"], ours_best = tune_ours(
        dataset, ROOT / "configs/tune.yaml", args.n_trials, workdir
    )
    seconds["ours"] = time.perf_counter() - started
    started = time.perf_counter()
    rows["implicit ALS 0.7.3"], implicit_best = tune_implicit(dataset, args.n_trials)
    seconds["implicit"] = time.perf_counter() - started
    full = (dataset.train + dataset.validation).tocsr()
    popularity = PopularityModel.fit(full)
    rows["popularity"] = evaluate(popularity.score_users, full, dataset.test, 10)
    rating, rating_best = tune_ours(
        dataset, ROOT / "configs/tune_rating.yaml", args.n_trials, workdir
    )

    print(f"\nML-100K, 75/25 per-user split seed 42, top-10, {args.n_trials} trials per model")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores\n")
    print("| model | NDCG@10 | P@10 | R@10 | MAP@10 | RMSE | MAE |")
    print("|---|---|---|---|---|---|---|")
    for name, metrics in rows.items():
        cells = " | ".join(f"{metrics[m]:.4f}" for m in RANKING)
        print(f"| {name} | {cells} | - | - |")
    print(
        f"| ours, rating mode (biased WALS, posterior average) | - | - | - | - | "
        f"{rating['rmse']:.4f} | "
        f"{rating['mae']:.4f} |"
    )
    ratio = rows["ours (WALS + item-item)"]["ndcg@10"] / rows["implicit ALS 0.7.3"]["ndcg@10"]
    print(f"\nNDCG@10 ours / implicit: {ratio:.3f}")
    print(
        f"tuning + retrain seconds: ours {seconds['ours']:.0f}, implicit {seconds['implicit']:.0f}"
    )
    print(f"best params: ours {ours_best['best_params']}")
    print(f"             implicit {implicit_best}")
    print(f"             rating {rating_best['best_params']}")


if __name__ == "__main__":
    main()
