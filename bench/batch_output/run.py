"""Peak memory of writing every user's top-k: all rows in a DataFrame, or streamed in chunks.

    python bench/batch_output/run.py                       # 10^6 users x 10^4 items, k = 10
    python bench/batch_output/run.py --users 200000 --mode stream

Each mode runs in its own process on the same model (random float32 factors, 64 of them, and
about 10 seen items per user: the cost depends on the shape, not on what the factors learned):

- `frame`: `walsrec.inference.recommend.recommendations_frame` then `write_table`, what batch
  inference did before streaming (its step also returned the frame, which ZenML then stored again);
- `stream`: `walsrec.inference.recommend.write_recommendations`, `--chunk-users` users at a time.

The process's peak RSS (VmHWM) is reset once the model is built (`/proc/self/clear_refs`), so
the number printed is what writing the top-k added on top of the model; the model's own size
and the wall time are printed beside it. `PYTHONPATH=<an older checkout>` runs `frame` on older
code.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

sys.path.append(str(Path(__file__).resolve().parents[2]))  # run from anywhere; PYTHONPATH wins


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def measure(args: argparse.Namespace) -> None:
    from walsrec.inference import recommend
    from walsrec.synthetic import random_model

    model = random_model(args.users, args.items, n_factors=args.factors, seen_per_user=args.seen)
    model_kib = _status_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM := VmRSS
    base_kib = _status_kib("VmHWM")
    start = time.perf_counter()
    if args.mode == "frame":
        frame, _ = recommend.recommendations_frame(model, k=args.k)
        recommend.write_table(frame, args.output)
        rows = len(frame)
    else:
        rows = recommend.write_recommendations(
            model, args.output, k=args.k, output_chunk_users=args.chunk_users
        ).rows
    seconds = time.perf_counter() - start
    added = (_status_kib("VmHWM") - base_kib) / 1024
    print(
        f"{args.mode:6s}: {rows:,} rows in {seconds:.1f} s; peak RSS +{added:,.0f} MiB over the "
        f"model's process ({model_kib / 1024:,.0f} MiB); {recommend.__file__}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--items", type=int, default=10_000)
    parser.add_argument("--factors", type=int, default=64)
    parser.add_argument("--seen", type=int, default=10, help="seen items per user")
    parser.add_argument("-k", "--k", type=int, default=10)
    parser.add_argument("--chunk-users", type=int, default=65_536)
    parser.add_argument("--mode", choices=["frame", "stream", "both"], default="both")
    parser.add_argument("--output", default="/tmp/walsrec-bench-topk.parquet")
    parser.add_argument("--inner", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.inner:
        measure(args)
        return
    print(
        f"{args.users:,} users x {args.items:,} items, {args.factors} factors, k={args.k}, "
        f"{args.seen} seen items per user, output {args.output}"
    )
    for mode in ["frame", "stream"] if args.mode == "both" else [args.mode]:
        command = [sys.executable, __file__, "--inner", "--mode", mode]
        for name in ("users", "items", "factors", "seen", "k", "chunk_users", "output"):
            command += [f"--{name.replace('_', '-')}", str(getattr(args, name))]
        subprocess.run(command, check=True)


if __name__ == "__main__":
    main()
