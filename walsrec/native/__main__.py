"""python -m walsrec.native [--force]: build the fused WALS solver and the ranking kernels now."""

from __future__ import annotations

import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from walsrec.native import NativeBuildError, build, build_kernels, load


def main(argv: list[str]) -> int:
    try:
        print(f"ranking kernels: {build_kernels(force='--force' in argv)}")
    except NativeBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        print("Ranking will use NumPy instead (same results, slower).", file=sys.stderr)
    try:
        path = build(force="--force" in argv)
        load()
    except NativeBuildError as error:
        print(f"error: {error}", file=sys.stderr)
        print("WALS will use the TensorFlow-op solvers (kernel: graph) instead.", file=sys.stderr)
        return 1
    print(f"fused WALS solver: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
