"""Anonymous traffic to random paths: worker RSS and /metrics size before and after.

    .venv/bin/python bench/serve/flood.py                # >= 100,000 requests, ~20 s

Issue #12's goal: after 100,000 requests to random paths without a token, worker RSS and the
size of `/metrics` are unchanged within 10%. The service runs as shipped (2 workers, a bearer
token set, metrics on) over a small random model; wrk (`wrk.lua` below: a random 16-character
path per request, GET and JSON POST alternating, no Authorization header) sends requests until
`--requests` have been answered, 401 each. Printed: the load average, each worker's RSS and the
size of /metrics after a warm-up (one 5 s wrk round of the same traffic) and after the flood,
their ratios, and the 401s counted on /metrics.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(PROJECT_ROOT))
sys.path.insert(0, str(Path(__file__).parent))

from worst_case import workers  # noqa: E402

from bench import bench_state, free_port, random_model, service_command, start  # noqa: E402
from serving.cli import stop_server  # noqa: E402

TOKEN = "flood-benchmark-token"
LUA = """
math.randomseed(%(seed)d)
local chars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
local n = 0
request = function()
  local path = {"/"}
  for i = 1, 16 do
    local c = math.random(1, #chars)
    path[#path + 1] = chars:sub(c, c)
  end
  n = n + 1
  if n %% 2 == 0 then
    return wrk.format("POST", table.concat(path), {["Content-Type"] = "application/json"}, "{}")
  end
  return wrk.format("GET", table.concat(path))
end
"""


def flood(port: int, script: Path, requests: int) -> dict:
    """wrk at 16 connections until about `requests` requests were answered."""
    sent = 0
    while sent < requests:
        output = subprocess.run(
            ["wrk", "-t1", "-c16", "-d5s", "-s", str(script), f"http://127.0.0.1:{port}"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        sent += int(re.search(r"(\d+) requests in", output).group(1))
    return {"sent": sent}


def metrics(port: int) -> bytes:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/metrics", headers={"Authorization": f"Bearer {TOKEN}"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return response.read()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=100_000)
    args = parser.parse_args()
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    state, env = bench_state("walsrec-bench-flood-")
    from serving.packaging import save_to_model_store

    tag = save_to_model_store(
        random_model(20_000, 5_000, 32, 20), model_name="bench", model_version="0"
    )
    script = state / "wrk.lua"
    script.write_text(LUA % {"seed": 7})
    port = free_port()
    server_env = {**env, "WALSREC_MODEL_TAG": tag, "WALSREC_API_TOKEN": TOKEN}
    server = start("bentoml", service_command(port), server_env, state / "server.log", port)
    try:
        flood(port, script, 1)  # warm-up, one 5 s round: what any traffic allocates
        metrics(port)  # /metrics counts itself once it has answered
        time.sleep(1)
        before = {w.pid: w.memory_info().rss for w in workers(server)}
        size_before = len(metrics(port))
        started = time.perf_counter()
        sent = flood(port, script, args.requests)["sent"]
        seconds = time.perf_counter() - started
        time.sleep(1)
        after = {w.pid: w.memory_info().rss for w in workers(server)}
        body = metrics(port)
        answered_401 = sum(
            float(value)
            for value in re.findall(
                rb'_request_total\{endpoint="other",http_response_code="401"\} (\S+)', body
            )
        )
        print(f"{sent:,} requests to random paths without a token in {seconds:.0f} s")
        print(f"401s counted on /metrics (warm-up included): {answered_401:,.0f}")
        for pid, rss in before.items():
            print(
                f"worker {pid}: RSS {rss >> 20} MiB -> {after[pid] >> 20} MiB "
                f"({after[pid] / rss:.3f}x)"
            )
        print(f"/metrics: {size_before:,} -> {len(body):,} bytes ({len(body) / size_before:.3f}x)")
    finally:
        stop_server(server)
        print(f"load average at end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
