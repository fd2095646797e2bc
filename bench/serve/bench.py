"""Serving benchmark: the BentoML service against a bare Starlette app, side by side.

    .venv/bin/python bench/serve/bench.py                  # the settings in README.md
    .venv/bin/python bench/serve/bench.py --duration 5 --rounds 1 --concurrency 32

A random model of MovieLens-20M size (138,493 users x 26,744 items x 64 factors, ~144 seen items
per user) goes into a temporary BentoML model store. Three servers run on 127.0.0.1 with the
same number of workers and load the same files: the service; the bare app (bench/serve/
bare_app.py, which calls the service's own top-k code) under stock `uvicorn --workers`; and the
bare app on workers that spread connections as the service does (bare_server.py). wrk (one
thread, `apt-get install wrk`) posts /recommend for a random known user (k=10, seen items
excluded) for a fixed duration at each concurrency, alternating the servers; each figure is the
median over the rounds, with each server's CPU time per request and the split of wrk's
connections over its workers. Everything stops by itself.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT))

from serving.cli import stop_server, wait_until_ready  # noqa: E402

LUA_SCRIPT = """
math.randomseed(%(seed)d)
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
request = function()
  local user = math.random(0, %(n_users)d - 1)
  return wrk.format(nil, "/recommend", nil, '{"user_id":"' .. user .. '","k":10}')
end
"""


def random_model(n_users: int, n_items: int, n_factors: int, seen_per_user: int, seed: int = 0):
    """A RecommenderModel with random factors and random seen items (ids "0", "1", ...)."""
    from walsrec.models.recommender import RecommenderModel

    rng = np.random.default_rng(seed)
    scale = 1 / np.sqrt(n_factors)
    indices = rng.integers(0, n_items, n_users * seen_per_user).astype(np.int32)
    indptr = np.arange(0, n_users * seen_per_user + 1, seen_per_user, dtype=np.int64)
    seen = sp.csr_matrix(
        (np.ones(indices.size, np.float32), indices, indptr), shape=(n_users, n_items)
    )
    return RecommenderModel(
        user_factors=rng.normal(0, scale, (n_users, n_factors)).astype(np.float32),
        item_factors=rng.normal(0, scale, (n_items, n_factors)).astype(np.float32),
        user_bias=None,
        item_bias=None,
        global_mean=0.0,
        user_ids=np.array([str(i) for i in range(n_users)], dtype=object),
        item_ids=np.array([str(i) for i in range(n_items)], dtype=object),
        seen=seen,
        item_popularity=np.bincount(indices, minlength=n_items).astype(np.float64),
        config={"n_factors": n_factors},
        metadata={"trained_at": "bench"},
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _seconds(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()
    return float(value) * {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}[unit]


def server_cpu_seconds(server: subprocess.Popen) -> float:
    """CPU seconds (user + system) used so far by a server and all its processes."""
    import psutil

    root = psutil.Process(server.pid)
    total = 0.0
    for process in [root, *root.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def connection_split(port: int) -> list[int]:
    """Established connections to `port` per server process, largest first (`ss`)."""
    out = subprocess.run(
        ["ss", "-tnpH", "state", "established", f"( sport = :{port} )"],
        capture_output=True, text=True, check=False,
    ).stdout  # fmt: skip
    counts: dict[str, int] = {}
    for pid in re.findall(r"pid=(\d+)", out):
        counts[pid] = counts.get(pid, 0) + 1
    return sorted(counts.values(), reverse=True)


def run_wrk(
    port: int,
    concurrency: int,
    duration: float,
    script: Path,
    server: subprocess.Popen | None = None,
) -> dict:
    """One wrk run; with `server`, also its CPU per request and how wrk's connections were
    split over its worker processes (sampled halfway)."""
    command = [
        "wrk",
        "-t1",
        f"-c{concurrency}",
        f"-d{max(1, round(duration))}s",
        "--latency",
        "--timeout",
        "5s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}",
    ]
    cpu_before = server_cpu_seconds(server) if server is not None else 0.0
    wrk = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    split: list[int] = []
    if server is not None:
        time.sleep(min(1.0, duration / 2))
        split = connection_split(port)
    output, errors_text = wrk.communicate()
    if wrk.returncode != 0:
        raise subprocess.CalledProcessError(wrk.returncode, command, output, errors_text)
    cpu = server_cpu_seconds(server) - cpu_before if server is not None else 0.0
    requests = int(re.search(r"(\d+) requests in", output).group(1))
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", output).group(1))
    p50 = _seconds(re.search(r"\s50%\s+(\S+)", output).group(1))
    p99 = _seconds(re.search(r"\s99%\s+(\S+)", output).group(1))
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    errors = re.search(r"Socket errors: (.*)", output)
    return {
        "rps": rps,
        "p50_ms": p50 * 1e3,
        "p99_ms": p99 * 1e3,
        "non_2xx": int(bad.group(1)) if bad else 0,
        "socket_errors": errors.group(1) if errors else "",
        "cpu_us": 1e6 * cpu / max(requests, 1),
        "split": split,
    }


def bench_state(prefix: str, **extra: str) -> tuple[Path, dict[str, str]]:
    """A temporary folder holding a BentoML home, and the servers' environment (this process's
    with `extra`); this process uses the same home, so the models it saves are the servers'."""
    state = Path(tempfile.mkdtemp(prefix=prefix))
    env = {
        **os.environ,
        "BENTOML_HOME": str(state / "bentoml"),
        "BENTOML_DO_NOT_TRACK": "true",
        "PYTHONPATH": str(PROJECT_ROOT),
        **extra,
    }
    os.environ.update({k: env[k] for k in ("BENTOML_HOME", "BENTOML_DO_NOT_TRACK")})
    return state, env


def start(
    name: str, command: list[str], env: dict[str, str], log: Path, port: int
) -> subprocess.Popen:
    """Start a server in its own session (stderr to `log`) and wait until /readyz answers."""
    server = subprocess.Popen(
        command, env=env, cwd=PROJECT_ROOT, start_new_session=True,
        stdout=subprocess.DEVNULL, stderr=log.open("w"),  # noqa: SIM115 (lives with the server)
    )  # fmt: skip
    try:
        seconds = wait_until_ready(f"http://127.0.0.1:{port}/readyz", server, timeout=180)
    except BaseException:
        stop_server(server)
        raise
    print(f"{name} ready on port {port} in {seconds:.1f} s")
    return server


def service_command(port: int, service: str = "serving.service:WalsrecService") -> list[str]:
    """`bentoml serve` of `service` (the one shipped by default) on 127.0.0.1:`port`."""
    return [sys.executable, "-m", "bentoml", "serve", service,
            "--host", "127.0.0.1", "--port", str(port)]  # fmt: skip


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The random model's shape: MovieLens-20M's by default."""
    parser.add_argument("--users", type=int, default=138_493)
    parser.add_argument("--items", type=int, default=26_744)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--seen-per-user", type=int, default=144)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_model_arguments(parser)
    parser.add_argument("--workers", type=int, default=2, help="workers of BOTH servers")
    parser.add_argument("--blas-threads", default="1", help="OPENBLAS_NUM_THREADS of both")
    parser.add_argument("--duration", type=int, default=8, help="seconds per measurement")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--service", default="serving.service:WalsrecService")
    parser.add_argument("--service-env", nargs="*", default=[], help="KEY=VALUE for BentoML")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    state, env = bench_state(
        "walsrec-bench-serve-",
        OPENBLAS_NUM_THREADS=args.blas_threads,
        OMP_NUM_THREADS=args.blas_threads,
    )
    from serving.packaging import save_to_model_store

    started = time.perf_counter()
    model = random_model(args.users, args.items, args.factors, args.seen_per_user)
    tag = save_to_model_store(model, model_name="bench", model_version="0")
    model_dir = Path(env["BENTOML_HOME"], "models", *tag.split(":"))
    print(
        f"model {args.users} x {args.items} x {args.factors} -> {tag} "
        f"({time.perf_counter() - started:.1f} s)"
    )
    script = state / "recommend.lua"
    script.write_text(LUA_SCRIPT % {"seed": 42, "n_users": args.users})

    bento_port, bare_port, balanced_port = free_port(), free_port(), free_port()
    service_env = dict(item.split("=", 1) for item in args.service_env)
    servers = {
        "bentoml": (
            service_command(bento_port, args.service),
            {**env, "WALSREC_WORKERS": str(args.workers), "WALSREC_MODEL_TAG": tag, **service_env},
            bento_port,
        ),
        "bare": (
            [
                sys.executable,
                "-m",
                "uvicorn",
                "bare_app:app",
                "--app-dir",
                str(Path(__file__).parent),
                "--host",
                "127.0.0.1",
                "--port",
                str(bare_port),
                "--workers",
                str(args.workers),
                "--no-access-log",
                "--log-level",
                "warning",
            ],
            {**env, "WALSREC_MODEL_DIR": str(model_dir)},
            bare_port,
        ),
        # The same app on workers that spread connections as the service does (bare_server.py).
        "balanced": (
            [
                sys.executable,
                str(Path(__file__).parent / "bare_server.py"),
                "--port",
                str(balanced_port),
                "--workers",
                str(args.workers),
            ],
            {**env, "WALSREC_MODEL_DIR": str(model_dir)},
            balanced_port,
        ),
    }
    processes = {}
    results: dict[tuple[str, int], list[dict]] = {}
    try:
        for name, (command, server_env, port) in servers.items():
            processes[name] = start(name, command, server_env, state / f"{name}.log", port)
        for port in (bento_port, bare_port, balanced_port):  # warm-up: page in the factors
            run_wrk(port, 8, 2, script)
        for round_number in range(args.rounds):
            for concurrency in args.concurrency:
                for name, (_, _, port) in servers.items():
                    result = run_wrk(port, concurrency, args.duration, script, processes[name])
                    results.setdefault((name, concurrency), []).append(result)
                    print(
                        f"  round {round_number + 1} c={concurrency:<3} {name:8} "
                        f"{result['rps']:8.0f} req/s  p50 {result['p50_ms']:6.2f} ms  "
                        f"p99 {result['p99_ms']:6.2f} ms  cpu {result['cpu_us']:4.0f} us/req  "
                        f"split {'/'.join(map(str, result['split']))}  "
                        f"non-2xx {result['non_2xx']}  {result['socket_errors']}"
                    )
    finally:
        for process in processes.values():
            stop_server(process)
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    print(
        f"\nmedians over {args.rounds} round(s) of {args.duration:g} s; workers={args.workers}, "
        f"OPENBLAS_NUM_THREADS={args.blas_threads}, {args.service}, env {service_env or '{}'}"
    )
    print(
        "bare: stock `uvicorn --workers`; balanced: the same app on workers that spread "
        "connections as the service does (bare_server.py); ratio = bentoml / baseline; "
        "CPU = the server's CPU time per request"
    )
    print(
        "| c | baseline | baseline req/s | bentoml req/s | ratio | baseline p99 | bentoml p99 | "
        "p99 ratio | baseline CPU | bentoml CPU | CPU ratio |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for concurrency in args.concurrency:
        med = {
            (name, key): statistics.median(r[key] for r in results[(name, concurrency)])
            for name in servers
            for key in ("rps", "p50_ms", "p99_ms", "cpu_us")
        }
        for baseline in ("bare", "balanced"):
            print(
                f"| {concurrency} | {baseline} | {med[baseline, 'rps']:.0f} | "
                f"{med['bentoml', 'rps']:.0f} | "
                f"**{med['bentoml', 'rps'] / med[baseline, 'rps']:.2f}x** | "
                f"{med[baseline, 'p99_ms']:.2f} ms | {med['bentoml', 'p99_ms']:.2f} ms | "
                f"**{med['bentoml', 'p99_ms'] / med[baseline, 'p99_ms']:.2f}x** | "
                f"{med[baseline, 'cpu_us']:.0f} us | {med['bentoml', 'cpu_us']:.0f} us | "
                f"{med['bentoml', 'cpu_us'] / med[baseline, 'cpu_us']:.2f}x |"
            )
    shutil.rmtree(state, ignore_errors=True)


if __name__ == "__main__":
    main()
