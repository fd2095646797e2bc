"""Quality on many datasets: our default and tuned WALS vs tuned implicit ALS, EASE, popularity.

python bench/quality/datasets.py [--n-trials 50] [--only NAME ...] [--file PATH ...]

Datasets: MovieLens-100K (the shared copy), synthetic data of several shapes and feedback kinds
(`walsrec.synthetic`: ratings, play counts, binary, an event log; catalogues of 10^3 to 10^5
items), and any interactions file passed with --file (read like `run.py --data`). Protocol for
each, as the pipelines do it: a 75/25 per-user random split (seed 42), then 20% of each user's
training part as validation; top-10 with the items seen in training removed.

- ours, default: `python run.py`'s model: the `auto` values of configs/train.yaml chosen from
  the profile of the whole training part, trained on it, evaluated on test.
- ours, tuned: configs/tune.yaml's search (fitted to the data profile), `--n-trials` trials on
  validation, the best retrained on train + validation.
- implicit ALS 0.7.3: Optuna TPE, the same number of trials on the same validation split over
  factors, regularization, alpha, iterations and the input weighting (raw, BM25, binary).
- EASE (Steck 2019): its one parameter (l2) chosen from a grid on validation, where the dense
  n_items^2 inverse fits (`--ease-max-items`); "-" elsewhere.
- popularity.

Every model is evaluated once on test. The table is printed with the machine described.
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
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import numpy as np  # noqa: E402
import optuna  # noqa: E402
import scipy.sparse as sp  # noqa: E402
import yaml  # noqa: E402
from run_bench import tune_implicit, tune_ours  # noqa: E402

from walsrec.data import SplitConfig, build_dataset, load_source  # noqa: E402
from walsrec.evaluation.metrics import evaluate  # noqa: E402
from walsrec.models.popularity import PopularityModel  # noqa: E402
from walsrec.models.wals import WALSConfig  # noqa: E402
from walsrec.profile import profile_dataset, profile_matrix, resolve_auto  # noqa: E402
from walsrec.synthetic import generate_event_log, generate_interactions  # noqa: E402
from walsrec.training import train_model  # noqa: E402

# name -> how to make it: ("ml-100k",) or (kind, n_users, n_items, n_interactions).
DATASETS = {
    "ml-100k": ("ml-100k",),
    "ratings-10k-items": ("ratings", 610, 9_724, 100_836),  # ml-latest-small's shape
    "counts-18k-items": ("counts", 1_892, 17_632, 92_834),  # lastfm-2k's shape
    "binary-1k-items": ("binary", 3_000, 1_000, 90_000),
    "events-5k-items": ("events", 4_000, 5_000, 80_000),
    "counts-100k-items": ("counts", 3_000, 100_000, 150_000),
}


def _split(interactions):
    return build_dataset(
        interactions, split=SplitConfig(method="random", test_ratio=0.25, validation_ratio=0.2)
    )


def make_dataset(name: str, spec: tuple, workdir: Path):
    """The split dataset (train, validation, test) of one benchmark entry."""
    if spec[0] == "ml-100k":
        return _split(load_source(str(ROOT.parent / "shared/data/ml-100k")))
    if spec[0] == "file":
        return _split(load_source(spec[1]))
    kind, n_users, n_items, n_interactions = spec
    path = workdir / f"{name}.parquet"
    if kind == "events":
        log = generate_event_log(n_users, n_items, n_interactions, seed=0)
        csv = log.write_csv(workdir / f"{name}.csv")
        from walsrec.data import ColumnSpec

        return _split(
            load_source(
                str(csv),
                columns=ColumnSpec(event="event_type", quantity="quantity", rating=None),
            )
        )
    data = generate_interactions(n_users, n_items, n_interactions, feedback=kind, seed=0)
    data.write_parquet(path)
    return _split(load_source(str(path)))


def merged(dataset):
    full = (dataset.train + dataset.validation).tocsr()
    full.sort_indices()
    return full


def ours_default(dataset) -> tuple[dict, dict]:
    """configs/train.yaml's model on train + validation (what `run.py` trains on)."""
    import dataclasses

    wals = yaml.safe_load((ROOT / "configs/train.yaml").read_text())["parameters"]["wals"]
    full = merged(dataset)
    data = dataclasses.replace(dataset, train=full, validation=None)
    values, chosen = resolve_auto(wals, profile_dataset(data))
    model = train_model(
        data, WALSConfig.from_dict(values), validation_every_epoch=False, progress=False
    )
    return evaluate(model.score_users, full, dataset.test, 10), {
        k: v["value"] for k, v in chosen.items()
    }


def ours_tuned(dataset, n_trials: int, workdir: Path, name: str) -> tuple[dict, dict]:
    """configs/tune.yaml's search with the pipeline's own core (run_bench.tune_ours)."""
    metrics, best = tune_ours(dataset, ROOT / "configs/tune.yaml", n_trials, workdir, name)
    return metrics, best["best_params"]


EASE_GRID = (10.0, 30.0, 100.0, 300.0, 1000.0, 3000.0, 10000.0)


def ease_tuned(dataset, max_items: int) -> tuple[dict | None, dict]:
    """EASE with l2 from a grid on validation; None when n_items^2 does not fit."""
    if dataset.n_items > max_items:
        return None, {"skipped": f"{dataset.n_items} items > --ease-max-items {max_items}"}

    def weights(train, l2):
        binary = sp.csr_matrix(train, dtype=np.float32, copy=True)
        binary.data[:] = 1.0
        gram = (binary.T @ binary).toarray().astype(np.float64)
        gram[np.diag_indices_from(gram)] += l2
        precision = np.linalg.inv(gram)
        b = -precision / np.diag(precision)[np.newaxis, :]
        b[np.diag_indices_from(b)] = 0.0
        return binary, b.astype(np.float32)

    def score_fn(binary, b):
        return lambda users: np.asarray(binary[users] @ b)

    values = {}
    for l2 in EASE_GRID:
        binary, b = weights(dataset.train, l2)
        values[l2] = evaluate(score_fn(binary, b), dataset.train, dataset.validation, 10)["ndcg@10"]
    best = max(values, key=values.get)
    full = merged(dataset)
    binary, b = weights(full, best)
    return evaluate(score_fn(binary, b), full, dataset.test, 10), {"l2": best}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-trials", type=int, default=50)
    parser.add_argument("--only", nargs="*", choices=sorted(DATASETS), help="these datasets")
    parser.add_argument("--file", nargs="*", default=[], help="interactions files to add")
    parser.add_argument("--ease-max-items", type=int, default=12_000)
    parser.add_argument("--skip-peers", action="store_true", help="only our two models")
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    import logging

    logging.getLogger("walsrec").setLevel(logging.WARNING)
    workdir = Path(tempfile.mkdtemp(prefix="walsrec-bench-datasets-"))
    entries = {name: DATASETS[name] for name in (args.only or DATASETS)}
    for path in args.file:
        entries[Path(path).name] = ("file", path)

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores")
    print(f"{args.n_trials} trials per tuned model; NDCG@10 on test (P@10, R@10 in the JSON)")
    header = "| dataset | kind | users x items, train | popularity | ours default | ours tuned "
    header += "| implicit ALS tuned | EASE tuned | default / tuned | load |"
    lines = [header, "|" + "---|" * 10]
    for name, spec in entries.items():
        started = time.perf_counter()
        dataset = make_dataset(name, spec, workdir)
        full = merged(dataset)
        profile = profile_matrix(full, declared_kind=dataset.stats.get("feedback_kind"))
        popularity = evaluate(PopularityModel.fit(full).score_users, full, dataset.test, 10)
        default, chosen = ours_default(dataset)
        tuned, best = ours_tuned(dataset, args.n_trials, workdir, name)
        seconds = {"ours": time.perf_counter() - started}
        peers = {"implicit": None, "ease": None}
        peer_params = {}
        if not args.skip_peers:
            peers["implicit"], peer_params["implicit"] = tune_implicit(dataset, args.n_trials)
            peers["ease"], peer_params["ease"] = ease_tuned(dataset, args.ease_max_items)

        def cell(metrics):
            return "-" if metrics is None else f"{metrics['ndcg@10']:.4f}"

        ratio = default["ndcg@10"] / tuned["ndcg@10"]
        line = (
            f"| {name} | {profile.kind} | {dataset.n_users:,} x {dataset.n_items:,}, "
            f"{full.nnz:,} | {cell(popularity)} | {cell(default)} | {cell(tuned)} | "
            f"{cell(peers['implicit'])} | {cell(peers['ease'])} | {ratio:.1%} | "
            f"{os.getloadavg()[0]:.1f} |"
        )
        lines.append(line)
        print(line, flush=True)
        print(f"    default values: {chosen}", flush=True)
        print(f"    ours tuned: {best}", flush=True)
        for peer, params in peer_params.items():
            print(f"    {peer}: {params}", flush=True)
        print(f"    seconds: {time.perf_counter() - started:.0f} ({seconds})", flush=True)
    print("\n" + "\n".join(lines))


if __name__ == "__main__":
    main()
