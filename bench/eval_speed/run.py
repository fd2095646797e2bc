"""Evaluation (score every user, top-k without seen items) with the native kernels vs NumPy.

    python bench/eval_speed/run.py                      # the MovieLens-20M shape, 64 factors
    python bench/eval_speed/run.py --shape lastfm-2k --repeats 5

`walsrec.evaluation.metrics.evaluate`, the function the training pipeline's evaluator, tuning trials
and batch inference (`recommend`) share, on `walsrec.synthetic` data of a named shape split 75/25
per user, with random float32 factors (the cost of ranking depends on the shape, not on what
the factors learned). Each repeat times it twice, alternating: with the native ranking kernels
(`walsrec/native/kernels.cc`) and with the NumPy selection (`WALSREC_NATIVE_KERNELS=0`'s path),
both over the same cache-sized chunks, one per core at a time. Printed: the medians, their
ratio, the GEMM floor (the float32 products of all users by all items alone, chunked and
threaded the same way, into reused buffers), the load average before and after. The machine
is shared: read the ratio, measured side by side, not the seconds.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script from anywhere

import numpy as np  # noqa: E402
import scipy.sparse as sp  # noqa: E402

from walsrec import native, synthetic  # noqa: E402
from walsrec.data.splits import random_holdout  # noqa: E402
from walsrec.evaluation.metrics import evaluate  # noqa: E402
from walsrec.inference.topk import chunk_size_for  # noqa: E402


def load_text() -> str:
    return "load " + ", ".join(f"{value:.1f}" for value in os.getloadavg())


def split(shape: str) -> tuple[sp.csr_matrix, sp.csr_matrix]:
    data = synthetic.generate_interactions(*synthetic.SHAPES[shape], feedback="binary", seed=0)
    users, items = data.users.astype(np.int64), data.items.astype(np.int64)
    test = random_holdout(users, 0.25, np.random.default_rng(42))
    size = (int(users.max()) + 1, int(items.max()) + 1)

    def part(mask: np.ndarray) -> sp.csr_matrix:
        ones = np.ones(int(mask.sum()), dtype=np.float32)
        matrix = sp.csr_matrix((ones, (users[mask], items[mask])), shape=size)
        matrix.sum_duplicates()
        return matrix

    return part(~test), part(test)


def gemm_seconds(users: np.ndarray, items: np.ndarray) -> float:
    """All users x all items, the products only: the floor. As `recommend` works (cache-sized
    chunks, one per core at a time, one BLAS thread each), but into a reused buffer per thread,
    so no page is faulted in."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import threadpool_limits

    chunk = chunk_size_for(items.shape[0])
    items_t = np.ascontiguousarray(items.T)
    threads = native.usable_cores()
    buffers = [np.empty((chunk, items.shape[0]), dtype=np.float32) for _ in range(threads)]

    def product(slot: int) -> None:
        buffer = buffers[slot]
        for start in range(slot * chunk, users.shape[0], threads * chunk):
            block = users[start : start + chunk]
            np.matmul(block, items_t, out=buffer[: block.shape[0]])

    started = time.perf_counter()
    with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:
        list(pool.map(product, range(threads)))
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", choices=sorted(synthetic.SHAPES), default="ml-20m")
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    arguments = parser.parse_args(argv)
    built = native.kernels()
    if built is None:
        raise SystemExit("the ranking kernels are not built: python -m walsrec.native")

    train, test = split(arguments.shape)
    rng = np.random.default_rng(0)
    user_factors = rng.standard_normal((train.shape[0], arguments.factors), dtype=np.float32)
    item_factors = rng.standard_normal((train.shape[1], arguments.factors), dtype=np.float32)

    def score(users: np.ndarray) -> np.ndarray:
        return user_factors[users] @ item_factors.T

    print(
        f"{os.cpu_count()} cores; {arguments.shape}: {train.shape[0]:,} users x "
        f"{train.shape[1]:,} items, train {train.nnz:,}, test {test.nnz:,}; "
        f"{arguments.factors} factors; chunks of {chunk_size_for(train.shape[1])} users"
    )
    before = load_text()
    times: dict[str, list[float]] = {"native": [], "numpy": [], "gemm": []}
    results = {}
    for _ in range(arguments.repeats):
        times["gemm"].append(gemm_seconds(user_factors, item_factors))
        for name in ("native", "numpy"):
            native.kernels = (lambda: built) if name == "native" else (lambda: None)
            started = time.perf_counter()
            results[name] = evaluate(score, train, test, 10)
            times[name].append(time.perf_counter() - started)
    medians = {name: statistics.median(values) for name, values in times.items()}
    same = all(results["native"][key] == results["numpy"][key] for key in results["native"])
    print(
        f"evaluate, median of {arguments.repeats}: native kernels {medians['native']:.2f} s, "
        f"NumPy {medians['numpy']:.2f} s, ratio {medians['native'] / medians['numpy']:.2f}; "
        f"GEMM alone {medians['gemm']:.2f} s (native = {medians['native'] / medians['gemm']:.1f}"
        f"x the floor); metrics identical: {same}  ({before} -> {load_text()})"
    )


if __name__ == "__main__":
    main()
