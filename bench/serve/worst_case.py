"""Worst requests under the caps: worker memory against idle, and the delay they cause others.

    .venv/bin/python bench/serve/worst_case.py             # ML-20M-sized model, ~3 minutes

Issue #12's goal: no request under the documented caps takes a worker above 2x its idle RSS or
delays a concurrent `/recommend` by more than 100 ms. The service (as shipped: 2 workers, 2
threads each, the fast path) serves a random model of MovieLens-20M size (bench.py's). For each
of the most expensive requests the caps allow, two client threads send it back to back for
`--seconds` while a probe thread sends a one-user `/recommend` (k=10) every 20 ms; the probe's
latencies are compared with the same probe on the idle server, and the workers' RSS is sampled
every 20 ms against their idle RSS. Printed: the load average (start and end), per request kind
its own median time, the probe's p50/p99/max and the p99's excess over idle, and the peak RSS
of the busiest worker as a multiple of its idle RSS.
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from bench import (  # noqa: E402
    add_model_arguments,
    bench_state,
    free_port,
    random_model,
    service_command,
    start,
)
from serving.cli import stop_server  # noqa: E402
from serving.schemas import (  # noqa: E402
    MAX_BATCH_K,
    MAX_BATCH_USERS,
    MAX_GIVEN_ITEMS,
    MAX_LISTED_ITEMS,
    MAX_SCORED_ITEMS,
)


def heavy_requests(n_users: int, n_items: int, k_cap: int) -> dict[str, tuple[str, dict]]:
    """The most expensive body of each endpoint that the caps accept."""
    users = [str(u) for u in range(0, n_users, max(1, n_users // MAX_BATCH_USERS))][
        :MAX_BATCH_USERS
    ]
    items = [str(i) for i in range(n_items)]
    k = min(k_cap, n_items)
    return {
        "recommend k=max, seen kept": (
            "/recommend",
            {"user_id": "1", "k": k, "exclude_seen": False},
        ),
        "recommend deny 10k items": (
            "/recommend",
            {"user_id": "2", "k": 1000, "deny_items": items[:MAX_LISTED_ITEMS]},
        ),
        f"recommend_batch {len(users)} users k={MAX_BATCH_K}": (
            "/recommend_batch",
            {"user_ids": users, "k": MAX_BATCH_K, "exclude_seen": False},
        ),
        f"recommend_for_items {MAX_GIVEN_ITEMS} items": (
            "/recommend_for_items",
            {"item_ids": items[:MAX_GIVEN_ITEMS], "ratings": [5.0] * MAX_GIVEN_ITEMS, "k": 1000},
        ),
        f"rank {MAX_SCORED_ITEMS} items": (
            "/rank",
            {"user_id": "3", "item_ids": items[:MAX_SCORED_ITEMS]},
        ),
        f"score {MAX_SCORED_ITEMS} items": (
            "/score",
            {"user_id": "4", "item_ids": items[:MAX_SCORED_ITEMS]},
        ),
    }


def post(connection: http.client.HTTPConnection, path: str, body: bytes) -> float:
    started = time.perf_counter()
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    if response.status != 200:
        raise RuntimeError(f"{path}: HTTP {response.status}")
    return time.perf_counter() - started


def workers(server: subprocess.Popen) -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process(server.pid).children(recursive=True)
        if "_bentoml_impl.worker.service" in " ".join(child.cmdline())
    ]


def probe(port: int, stop: threading.Event, latencies: list[float], n_users: int) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    user = 0
    while not stop.is_set():
        user = (user + 7919) % n_users
        body = json.dumps({"user_id": str(user), "k": 10}).encode()
        latencies.append(post(connection, "/recommend", body))
        time.sleep(0.02)
    connection.close()


def load(port: int, stop: threading.Event, path: str, body: bytes, times: list[float]) -> None:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    while not stop.is_set():
        times.append(post(connection, path, body))
    connection.close()


def measure(port, server, seconds, n_users, heavy=None) -> dict:
    stop = threading.Event()
    latencies: list[float] = []
    times: list[float] = []
    threads = [threading.Thread(target=probe, args=(port, stop, latencies, n_users))]
    if heavy is not None:
        path, body = heavy
        data = json.dumps(body).encode()
        threads += [
            threading.Thread(target=load, args=(port, stop, path, data, times)) for _ in range(2)
        ]
    peak: dict[int, int] = {}
    for thread in threads:
        thread.start()
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for worker in workers(server):
            with contextlib.suppress(psutil.NoSuchProcess):
                peak[worker.pid] = max(peak.get(worker.pid, 0), worker.memory_info().rss)
        time.sleep(0.02)
    stop.set()
    for thread in threads:
        thread.join()
    ordered = sorted(latencies)
    return {
        "probe_p50": statistics.median(ordered) * 1000,
        "probe_p99": ordered[int(0.99 * (len(ordered) - 1))] * 1000,
        "probe_max": ordered[-1] * 1000,
        "heavy_p50": statistics.median(times) * 1000 if times else 0.0,
        "heavy_n": len(times),
        "peak_rss": peak,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--seconds", type=float, default=10, help="per request kind")
    parser.add_argument("--only", default="", help="request kinds whose name contains this")
    parser.add_argument("--service-env", nargs="*", default=[], help="KEY=VALUE for the server")
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    state, env = bench_state("walsrec-bench-worst-")
    from serving.packaging import save_to_model_store
    from serving.schemas import MAX_ANSWER_ITEMS

    model = random_model(args.users, args.items, args.factors, args.seen_per_user)
    tag = save_to_model_store(model, model_name="bench", model_version="0")
    port = free_port()
    service_env = dict(item.split("=", 1) for item in args.service_env)
    server_env = {**env, "WALSREC_MODEL_TAG": tag, **service_env}
    server = start("bentoml", service_command(port), server_env, state / "server.log", port)
    try:
        measure(port, server, 3, args.users)  # warm-up: page in the factors
        idle = measure(port, server, args.seconds, args.users)
        idle_rss = {pid: psutil.Process(pid).memory_info().rss for pid in idle["peak_rss"]}
        print(
            f"{model.n_users} users x {model.n_items} items x {model.n_factors} factors; "
            f"idle worker RSS {', '.join(f'{r >> 20} MiB' for r in idle_rss.values())}; "
            f"idle probe p50 {idle['probe_p50']:.2f} ms, p99 {idle['probe_p99']:.2f} ms"
        )
        print(
            "| request (two clients, back to back) | its p50 | probe p50 | probe p99 | "
            "probe max | p99 - idle p99 | peak RSS / idle |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, heavy in heavy_requests(args.users, args.items, MAX_ANSWER_ITEMS).items():
            if args.only not in name:
                continue
            result = measure(port, server, args.seconds, args.users, heavy)
            ratio = max(result["peak_rss"].get(pid, 0) / rss for pid, rss in idle_rss.items())
            print(
                f"| {name} | {result['heavy_p50']:.0f} ms (n={result['heavy_n']}) | "
                f"{result['probe_p50']:.2f} ms | {result['probe_p99']:.2f} ms | "
                f"{result['probe_max']:.1f} ms | "
                f"{result['probe_p99'] - idle['probe_p99']:+.1f} ms | {ratio:.2f}x |"
            )
    finally:
        stop_server(server)
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
