"""The whole training pipeline on the MovieLens-20M shape: wall time, per-step times, peak RSS.

    python bench/pipeline_speed/run.py                      # generates the data if missing
    python bench/pipeline_speed/run.py --data interactions.parquet --repeats 2

Each repeat is one `python run.py --config configs/train_large.yaml --data DATA --no-cache` in
its own process (so the start-up and the imports count, as for a user). Prints the machine,
the load average before and after each run, every step's time as ZenML reports it, the run's
wall time, its peak RSS ("Peak memory", the whole process) and the test NDCG@10 beside
popularity's: issue #14's goals are under 40 s wall, evaluation under 5 s and under 3 GB.
On this shared 2-core machine the load average says how much of it the run had.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_STEP = re.compile(r"Step `?(\w+)`? has finished in `?([0-9hms.]+)`?")
_PEAK = re.compile(r"Peak memory: +([0-9.]+) GiB")
_NDCG = re.compile(r"\| ndcg@10 \| ([0-9.]+) \| ([0-9.]+) \|")


def seconds(text: str) -> float:
    """ZenML's durations: `12.345s`, `1m5s`, `1h2m3s`."""
    total = 0.0
    for value, unit in re.findall(r"([0-9.]+)([hms])", text):
        total += float(value) * {"h": 3600, "m": 60, "s": 1}[unit]
    return total


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = ""
    try:
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 2**20:.0f} GiB RAM"
    except (OSError, ValueError, IndexError):
        pass
    return f"{cpu}, {os.cpu_count()} cores{memory}, Python {platform.python_version()}"


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def run_once(data: Path, config: str) -> dict:
    command = [sys.executable, "run.py", "--config", config, "--data", str(data), "--no-cache"]
    before = load_average()
    started = time.perf_counter()
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - started
    output = _ANSI.sub("", result.stdout + result.stderr)
    if result.returncode != 0:
        sys.exit(f"run.py failed ({result.returncode}):\n{output[-3000:]}")
    steps = {name: seconds(value) for name, value in _STEP.findall(output)}
    peak = _PEAK.search(output)
    ndcg = _NDCG.search(output)
    return {
        "wall": wall,
        "steps": steps,
        "peak_gib": float(peak.group(1)) if peak else float("nan"),
        "ndcg": ndcg.groups() if ndcg else ("?", "?"),
        "load_before": before,
        "load_after": load_average(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/walsrec-bench/ml20m.parquet"))
    parser.add_argument("--config", default="configs/train_large.yaml")
    parser.add_argument("--repeats", type=int, default=1)
    arguments = parser.parse_args()
    if not arguments.data.exists():
        arguments.data.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [sys.executable, "-m", "walsrec.synthetic", "--shape", "ml-20m", "--output"]
            + [str(arguments.data)],
            cwd=ROOT,
            check=True,
        )
    print(f"machine: {machine()}")
    print(f"command: python run.py --config {arguments.config} --data {arguments.data} --no-cache")
    for repeat in range(1, arguments.repeats + 1):
        result = run_once(arguments.data, arguments.config)
        print(f"\nrun {repeat}: load average {result['load_before']} -> {result['load_after']}")
        print(f"  {'step':<22} {'seconds':>8}")
        for name, value in result["steps"].items():
            print(f"  {name:<22} {value:8.2f}")
        print(f"  {'sum of steps':<22} {sum(result['steps'].values()):8.2f}")
        print(f"  {'wall (process)':<22} {result['wall']:8.2f}")
        print(f"  peak RSS {result['peak_gib']:.2f} GiB; test NDCG@10 {result['ndcg'][0]}")
        print(f"  (popularity {result['ndcg'][1]})")


if __name__ == "__main__":
    main()
