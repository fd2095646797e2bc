"""One tuning trial's time (and optionally a whole study) on the lastfm-2k shape and ML-100K.

    python bench/tuning_speed/run.py                        # one trial, median of 3, both sets
    python bench/tuning_speed/run.py --study 50             # plus a 50-trial study per set
    python bench/tuning_speed/run.py --datasets lastfm-2k --weightings log
    python bench/tuning_speed/run.py --compare-kernels    # native ranking kernels vs NumPy

A trial is exactly what `python run.py tune` runs per trial: `ValidationObjective` (train WALS on
the validation split's training part, the validation NDCG@10 after every epoch) called with an
Optuna `FixedTrial` of 96 factors, 15 epochs, the exact (Cholesky) solver, implicit mode and
the given observed weighting. The data are split like the tuning pipeline: 25% of each user's
interactions held out for test, 20% of the rest for validation (validation items unseen in
training go back to training), items indexed from the training part. lastfm-2k is
`walsrec.synthetic`'s play-count data of that shape (1,892 users x 17,632 artists, 92,834
interactions); ML-100K is read from ../shared/data/ml-100k/u.data ($WALSREC_ML100K).

With --compare-kernels each trial is timed twice, alternating, with the native ranking kernels
(walsrec/native/kernels.cc: top-k in evaluation, top-n in the kNN blend) and with the NumPy
selection they replace, and the ratio of the medians is printed.

Printed per dataset and weighting: the median and the individual trial times with the load
average (`os.getloadavg()`) before and after, and the time per epoch spent in the two solves
(WALS's own `history`), so the rest (objective, validation, Python) can be read off. The machine
is shared: compare ratios measured in the same run, not times across runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT))  # run as a script from anywhere
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

TRIAL = {
    "n_factors": 96,
    "epochs": 15,
    "regularization": 30.0,
    "alpha": 1.0,
    "unobserved_weight": 1.0,
}


def load(name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users, items, values) of a dataset, as integer codes and float values."""
    if name == "ml-100k":
        folder = Path(os.environ.get("WALSREC_ML100K", PROJECT_ROOT.parent / "shared/data/ml-100k"))
        table = np.loadtxt(folder / "u.data", dtype=np.int64)
        users, items = (np.unique(table[:, c], return_inverse=True)[1] for c in (0, 1))
        return users, items, table[:, 2].astype(np.float64)
    from walsrec import synthetic

    data = synthetic.generate_interactions(*synthetic.SHAPES[name], feedback="counts", seed=0)
    return data.users.astype(np.int64), data.items.astype(np.int64), data.ratings.astype(float)


def validation_split(
    users: np.ndarray, items: np.ndarray, values: np.ndarray, seed: int = 42
) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    """The tuning pipeline's (train, validation) matrices: test and validation per-user holdouts."""
    from walsrec.data.splits import random_holdout

    test = random_holdout(users, 0.25, np.random.default_rng([seed, 0]))
    users, items, values = users[~test], items[~test], values[~test]
    held = random_holdout(users, 0.2, np.random.default_rng([seed, 1]))
    in_train = np.zeros(items.max() + 1, dtype=bool)
    in_train[items[~held]] = True
    held &= in_train[items]  # an item only in validation goes back to training
    in_train[items[~held]] = True
    vocabulary = np.flatnonzero(in_train)
    code = np.full(items.max() + 1, -1)
    code[vocabulary] = np.arange(vocabulary.size)
    shape = (int(users.max()) + 1, vocabulary.size)

    def part(mask: np.ndarray) -> sp.csr_matrix:
        matrix = sp.csr_matrix((values[mask], (users[mask], code[items[mask]])), shape=shape)
        matrix.sort_indices()
        return matrix

    return part(~held), part(held)


def trial_seconds(objective, params: dict, repeats: int) -> tuple[list[float], float, float]:
    """Wall times of `repeats` trials (after one warm-up), and the solve seconds per epoch."""
    import optuna

    from walsrec.models import wals

    solves: list[float] = []
    original = wals.train_wals

    def recording(*args, **kwargs):
        model = original(*args, **kwargs)
        solves.extend(h.seconds for h in model.history)
        return model

    wals_module_names = ("walsrec.tuning.objective",)
    for name in wals_module_names:
        sys.modules[name].train_wals = recording
    value = objective(optuna.trial.FixedTrial(params))  # warm-up: tracing, first allocations
    solves.clear()
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        objective(optuna.trial.FixedTrial(params))
        times.append(time.perf_counter() - started)
    for name in wals_module_names:
        sys.modules[name].train_wals = original
    return times, statistics.median(solves), value


def study_seconds(objective, trials: int) -> tuple[float, dict]:
    """Wall time of a study of the tune config's search space with its sampler and pruner."""
    import optuna

    from walsrec.tuning import TuningConfig, _sampler_and_pruner

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    config = TuningConfig(
        search_space=objective.search_space,
        n_trials=trials,
        n_startup_trials=10,
        pruner_startup_trials=5,
        pruner_warmup_epochs=3,
    )
    sampler, pruner = _sampler_and_pruner(config, "")
    study = optuna.create_study(direction="maximize", sampler=sampler, pruner=pruner)
    started = time.perf_counter()
    study.optimize(objective, n_trials=trials)
    seconds = time.perf_counter() - started
    states: dict = {}
    for trial in study.trials:
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    return seconds, states


def compare_kernels(objective, repeats: int, weighting: str) -> None:
    """Trial times with the native ranking kernels and with NumPy, alternating (blend on)."""
    from walsrec import native

    built = native.kernels
    if built() is None:
        raise SystemExit("the ranking kernels are not built: python -m walsrec.native")
    objective.base_blend = {"item_item_weight": 0.3, "method": "knn", "neighbors": 100}
    times: dict[str, list[float]] = {"native": [], "numpy": []}
    values = {}
    before = load_text()
    for _ in range(repeats):
        for name in ("native", "numpy"):
            native.kernels = built if name == "native" else (lambda: None)
            objective._item_item.clear()  # rebuilt per trial, as when TPE varies neighbours
            started = time.perf_counter()
            values[name] = objective(_fixed_trial())
            times[name].append(time.perf_counter() - started)
    native.kernels = built
    medians = {name: statistics.median(values_) for name, values_ in times.items()}
    print(
        f"  trial ({weighting}, kNN blend 0.3): native kernels {medians['native']:.2f} s, "
        f"NumPy {medians['numpy']:.2f} s, ratio {medians['native'] / medians['numpy']:.2f} "
        f"(ndcg@10 {values['native']:.4f} / {values['numpy']:.4f}; {before} -> {load_text()})"
    )


def _fixed_trial():
    import optuna

    return optuna.trial.FixedTrial({})


def load_text() -> str:
    return "load " + ", ".join(f"{value:.1f}" for value in os.getloadavg())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["lastfm-2k", "ml-100k"])
    parser.add_argument("--weightings", nargs="+", default=["linear", "log"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--study", type=int, default=0, help="also run a study of N trials")
    parser.add_argument(
        "--compare-kernels", action="store_true", help="native ranking kernels vs NumPy"
    )
    arguments = parser.parse_args(argv)

    from walsrec.tuning import SearchSpace, ValidationFold, ValidationObjective

    print(f"{os.cpu_count()} cores, {load_text()}")
    for name in arguments.datasets:
        train, validation = validation_split(*load(name))
        item_lengths = np.diff(train.tocsc().indptr)
        print(
            f"\n{name}: train {train.shape[0]} x {train.shape[1]}, {train.nnz} entries "
            f"({np.mean(item_lengths <= 2):.0%} of items with <= 2), validation {validation.nnz}"
        )
        fold = ValidationFold(train, validation)
        base = {"mode": "implicit", "solver": "cholesky", "jit_compile": False}
        for weighting in arguments.weightings:
            objective = ValidationObjective(
                [fold], SearchSpace.from_dict({}), "ndcg@10", {**base, **TRIAL}, {}
            )
            objective.base_wals["observed_weighting"] = weighting
            before = load_text()
            if arguments.compare_kernels:
                compare_kernels(objective, arguments.repeats, weighting)
                continue
            times, solve, value = trial_seconds(objective, {}, arguments.repeats)
            print(
                f"  trial ({weighting}): median {statistics.median(times):.2f} s "
                f"[{', '.join(f'{t:.2f}' for t in times)}], solves {solve * 1000:.0f} ms/epoch "
                f"of {statistics.median(times) / TRIAL['epochs'] * 1000:.0f} ms/epoch, "
                f"ndcg@10 {value:.4f}  ({before} -> {load_text()})"
            )
        if arguments.study:
            space = {
                "n_factors": {"type": "int", "low": 16, "high": 96, "step": 8},
                "regularization": {"type": "float", "low": 3.0, "high": 150.0, "log": True},
                "alpha": {"type": "float", "low": 0.2, "high": 5.0, "log": True},
                "unobserved_weight": {"type": "float", "low": 0.3, "high": 3.0, "log": True},
                "epochs": {"type": "int", "low": 6, "high": 15},
            }
            objective = ValidationObjective(
                [fold], SearchSpace.from_dict(space), "ndcg@10", {**base, **TRIAL}, {}
            )
            before = load_text()
            seconds, states = study_seconds(objective, arguments.study)
            print(
                f"  study of {arguments.study} trials (tune.yaml's WALS search space, no blend): "
                f"{seconds:.1f} s, {states}  ({before} -> {load_text()})"
            )


if __name__ == "__main__":
    main()
