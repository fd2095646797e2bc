"""WALS training speed, memory and quality against `implicit` ALS, side by side in one run.

    python bench/train_speed/run.py                       # MovieLens-20M shape, 64 factors
    python bench/train_speed/run.py --shape ml-1m --epochs 5

One synthetic matrix (walsrec.synthetic: power-law users and items, planted tastes) is split
into training and held-out interactions (one per user), written to a temporary folder, and each
solver trains on it in its own subprocess, so each reports its own peak RSS. Every solver runs
the same number of epochs with the same model (64 factors, confidence 1 + alpha * rating,
regularization): this project's WALS with the CG and the exact (Cholesky) solver, and implicit's
CPU ALS with CG and with Cholesky. Printed per solver: the median epoch time (epochs 2..N), the
first epoch (compile warm-up for XLA), peak RSS, the RSS of the bare runtime before any data is
loaded (TensorFlow's own cost), and held-out NDCG@10 after the last epoch; then the ratios.

Time to quality (issue #14): `--curve --epochs 15` evaluates held-out NDCG@10 after every epoch
(outside the timed epochs) and prints, per solver, the training time until it first reached
implicit CG's NDCG@10 after its last epoch, as a fraction of implicit CG's whole training time.

    python bench/train_speed/run.py --curve --epochs 15 --solvers walsrec-cg,implicit-cg
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT))  # run as a script from anywhere
SOLVERS = ("walsrec-cg", "walsrec-cholesky", "implicit-cg", "implicit-cholesky")


def peak_rss_mb() -> float:
    """This process's peak RSS. Not getrusage: its ru_maxrss survives fork and exec, so a
    worker would inherit the driver's peak; VmHWM belongs to the worker's own memory."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (
        f"{cpu}, {os.cpu_count()} cores, {memory:.0f} GiB, Python {platform.python_version()}, "
        f"load average at start {load}"
    )


# --------------------------------------------------------------------------------------------
# Worker: one solver in its own process
# --------------------------------------------------------------------------------------------


def worker(solver: str, folder: Path, settings: dict) -> dict:
    import numpy as np
    import scipy.sparse as sp

    if solver.startswith("walsrec"):
        from walsrec.models.wals import configure_threads

        if settings["kernel"] == "graph":
            # Two chunks in flight, each op single-threaded: better than threads inside small ops.
            configure_threads(intra_op=1, inter_op=2)
        import tensorflow as tf

        tf.constant(1.0).numpy()  # start the runtime: its RSS is measured before any data
    else:
        from threadpoolctl import threadpool_limits

        threadpool_limits(1, "blas")  # implicit's own threads do the work
        from implicit.cpu.als import AlternatingLeastSquares
    runtime_rss = peak_rss_mb()
    from walsrec.evaluation.metrics import evaluate

    train = sp.load_npz(folder / "train.npz").tocsr()
    test = sp.load_npz(folder / "test.npz").tocsr()
    epochs = settings["epochs"]
    rng = np.random.default_rng(0)
    users = np.flatnonzero(np.diff(test.indptr))
    users = np.sort(rng.choice(users, min(settings["eval_users"], users.size), replace=False))
    keep = np.zeros(test.shape[0], dtype=np.float32)
    keep[users] = 1.0
    sampled_test = (sp.diags(keep) @ test).tocsr()  # only the sampled users keep test items
    sampled_test.eliminate_zeros()

    def ndcg(user_factors: np.ndarray, item_factors: np.ndarray) -> float:
        scores = lambda batch: user_factors[batch] @ item_factors.T  # noqa: E731
        return evaluate(scores, train, sampled_test)["ndcg@10"]

    # --curve: held-out NDCG@10 after every epoch, outside the timed epochs (both libraries
    # time an epoch before calling back), for time-to-quality.
    curve: list[float] = []
    if solver.startswith("walsrec"):
        from walsrec.models.wals import WALSConfig, train_wals

        config = WALSConfig(
            n_factors=settings["factors"],
            regularization=settings["regularization"],
            alpha=settings["alpha"],
            observed_weighting="linear",
            unobserved_weight=1.0,
            epochs=epochs,
            solver=solver.split("-", 1)[1],
            cg_steps=settings["cg_steps"],
            max_chunk_elements=settings["chunk_elements"],
            init_scale=0.1,
            kernel=settings["kernel"],
        )
        callback = None
        if settings["curve"]:
            callback = lambda _, snapshot: curve.append(  # noqa: E731
                ndcg(snapshot.user_factors, snapshot.item_factors)
            )
        model = train_wals(train, config, callback=callback)
        seconds = [stats.seconds for stats in model.history]
        user_factors, item_factors = model.user_factors, model.item_factors
    else:
        seconds = []
        # implicit's confidence is alpha * r itself (its solver weighs an observed entry by
        # confidence - 1 over the unobserved weight 1), ours 1 + alpha * r: given 1 + alpha * r
        # with alpha 1, it fits the same model (before 2026-12-04 it fitted alpha * r, so at
        # alpha 1 binary entries weighed no more than unobserved ones). In place: no second
        # matrix in implicit's peak RSS; the evaluation reads only which entries are seen.
        confidences = train
        confidences.data *= settings["alpha"]
        confidences.data += 1.0
        als = AlternatingLeastSquares(
            factors=settings["factors"],
            regularization=settings["regularization"],
            alpha=1.0,
            iterations=epochs,
            use_cg=solver == "implicit-cg",  # implicit 0.7 always runs 3 CG steps
            calculate_training_loss=False,
            random_state=42,
            num_threads=0,
        )

        def callback(_, elapsed, __) -> None:
            seconds.append(elapsed)
            if settings["curve"]:
                curve.append(ndcg(np.asarray(als.user_factors), np.asarray(als.item_factors)))

        als.fit(confidences, show_progress=False, callback=callback)
        user_factors, item_factors = np.asarray(als.user_factors), np.asarray(als.item_factors)
    training_rss = peak_rss_mb()
    metrics = evaluate(lambda batch: user_factors[batch] @ item_factors.T, train, sampled_test)
    return {
        "solver": solver,
        "epoch_seconds": seconds,
        "runtime_rss_mb": runtime_rss,
        "peak_rss_mb": training_rss,
        "ndcg@10": metrics["ndcg@10"],
        "n_users_evaluated": metrics["n_users_evaluated"],
        "curve": curve,
    }


def time_to_quality(results: dict, reference: str, tolerance: float = 0.0) -> list[str]:
    """Per solver: the training seconds (epochs only) until its held-out NDCG@10 first reached
    the reference solver's final one (less `tolerance`, a fraction), as a ratio of the
    reference's whole training time."""
    target = results[reference]["curve"][-1] * (1 - tolerance)
    total = sum(results[reference]["epoch_seconds"])
    within = f" less {tolerance:.0%}" if tolerance else ""
    lines = [
        f"time to {reference}'s final NDCG@10{within}, {target:.4f} (its {total:.1f} s of epochs):"
    ]
    for solver, result in results.items():
        elapsed, reached = 0.0, None
        for epoch, (seconds, value) in enumerate(
            zip(result["epoch_seconds"], result["curve"], strict=True), 1
        ):
            elapsed += seconds
            if value >= target:
                reached = (epoch, elapsed)
                break
        if reached is None:
            best = max(result["curve"])
            lines.append(f"  {solver:18s} never (best {best:.4f})")
        else:
            epoch, elapsed = reached
            lines.append(
                f"  {solver:18s} epoch {epoch}, {elapsed:.1f} s = x{elapsed / total:.2f} of "
                f"{reference}'s time"
            )
    return lines


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def prepare(folder: Path, shape: str, seed: int) -> str:
    import numpy as np
    import scipy.sparse as sp

    from walsrec.synthetic import SHAPES, generate_interactions

    started = time.perf_counter()
    data = generate_interactions(*SHAPES[shape], seed=seed)
    generated = time.perf_counter() - started
    # Hold out one random interaction per user with at least two.
    rng = np.random.default_rng(seed)
    order = np.argsort(data.users + rng.random(data.users.size), kind="stable")
    users = data.users[order]
    first = np.r_[True, users[1:] != users[:-1]]
    counts = np.bincount(data.users, minlength=data.n_users)
    held_out = first & (counts[users] >= 2)
    shape_ = (data.n_users, data.n_items)
    for name, keep in (("train", ~held_out), ("test", held_out)):
        rows = order[keep]
        matrix = sp.csr_matrix(
            (data.ratings[rows], (data.users[rows], data.items[rows])), shape=shape_
        )
        sp.save_npz(folder / f"{name}.npz", matrix, compressed=False)
    return (
        f"{shape}-shaped synthetic data: {data.n_users:,} users x {data.n_items:,} items x "
        f"{data.n_interactions:,} interactions (generated in {generated:.1f} s), "
        f"{int(held_out.sum()):,} held out"
    )


def median(values: list[float]) -> float:
    values = sorted(values)
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else 0.5 * (values[middle - 1] + values[middle])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shape", default="ml-20m", choices=("ml-100k", "ml-1m", "ml-20m"))
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--regularization", type=float, default=1.0)
    parser.add_argument("--alpha", type=float, default=1.0)
    parser.add_argument("--cg-steps", type=int, default=3)
    parser.add_argument("--chunk-elements", type=int, default=32768)
    parser.add_argument("--kernel", default="fused", choices=("fused", "graph"))
    parser.add_argument("--eval-users", type=int, default=20000)
    parser.add_argument("--solvers", default=",".join(SOLVERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--curve",
        action="store_true",
        help="held-out NDCG@10 after every epoch, and each solver's time to implicit-cg's final",
    )
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    arguments = parser.parse_args()
    settings = {
        "factors": arguments.factors,
        "epochs": arguments.epochs,
        "regularization": arguments.regularization,
        "alpha": arguments.alpha,
        "cg_steps": arguments.cg_steps,
        "chunk_elements": arguments.chunk_elements,
        "kernel": arguments.kernel,
        "eval_users": arguments.eval_users,
        "curve": arguments.curve,
    }
    if arguments.worker:
        print(json.dumps(worker(arguments.worker, Path(arguments.folder), settings)))
        return

    print(f"machine: {machine()}")
    import implicit
    import tensorflow as tf

    print(f"tensorflow {tf.__version__}, implicit {implicit.__version__}")
    print(f"settings: {json.dumps(settings)}")
    results = {}
    with tempfile.TemporaryDirectory(prefix="train-speed-") as folder:
        print(prepare(Path(folder), arguments.shape, arguments.seed), flush=True)
        for solver in arguments.solvers.split(","):
            command = [sys.executable, __file__, "--worker", solver, "--folder", folder]
            command += [
                f"--{key.replace('_', '-')}={value}"
                for key, value in settings.items()
                if key != "curve"
            ]
            command += ["--curve"] if settings["curve"] else []
            finished = subprocess.run(
                command, capture_output=True, text=True, cwd=PROJECT_ROOT, check=False
            )
            if finished.returncode != 0:
                print(f"{solver}: FAILED\n{finished.stderr[-3000:]}")
                continue
            result = json.loads(finished.stdout.strip().splitlines()[-1])
            results[solver] = result
            seconds = result["epoch_seconds"]
            steady = median(seconds[1:]) if len(seconds) > 1 else seconds[0]
            result["median_epoch"] = steady
            print(
                f"{solver:18s} median epoch {steady:7.2f} s | first epoch {seconds[0]:7.2f} s "
                f"(warm-up {seconds[0] - steady:6.2f} s) | peak RSS {result['peak_rss_mb']:6.0f}"
                f" MB (runtime alone {result['runtime_rss_mb']:4.0f} MB) | NDCG@10 "
                f"{result['ndcg@10']:.4f} | epochs {', '.join(f'{s:.2f}' for s in seconds)}",
                flush=True,
            )
            if result["curve"]:
                print(f"{'':18s} NDCG@10 by epoch {', '.join(f'{v:.4f}' for v in result['curve'])}")
    pairs = [("walsrec-cg", "implicit-cg"), ("walsrec-cholesky", "implicit-cholesky")]
    for ours, theirs in pairs:
        if ours in results and theirs in results:
            a, b = results[ours], results[theirs]
            print(
                f"{ours} / {theirs}: epoch time x{a['median_epoch'] / b['median_epoch']:.2f}, "
                f"peak RSS x{a['peak_rss_mb'] / b['peak_rss_mb']:.2f}, NDCG@10 "
                f"{a['ndcg@10']:.4f} vs {b['ndcg@10']:.4f}"
            )
    if settings["curve"] and "implicit-cg" in results:
        print("\n".join(time_to_quality(results, "implicit-cg")))
        print("\n".join(time_to_quality(results, "implicit-cg", tolerance=0.01)))
    print(f"load average at end: {', '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
