"""Write the benchmark's TRAIN.tsv / TEST.tsv: a 75/25 per-user stratified split, seed 42.

python bench/quality/make_split.py ../shared/data/ml-100k/u.data OUT_DIR

The split is the project's own `random` method (walsrec.data.splits.random_holdout): each
user's interactions are shuffled with seed 42 and round(0.25 * n) go to test, at least one
staying in train. Both files keep the ml-100k `u.data` layout (user, item, rating, timestamp,
tab-separated, no header), so `python run.py tune --data TRAIN.tsv --test-data TEST.tsv` reads
them like the original.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from walsrec.data.splits import random_holdout  # noqa: E402

COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


def split_frame(frame: pd.DataFrame, test_ratio: float = 0.25, seed: int = 42):
    """(train, test) frames: per user, round(test_ratio * n) random rows go to test."""
    user_codes, _ = pd.factorize(frame["user_id"])
    # The same generator stream as build_dataset's test split (stream 0 of the seed).
    held = random_holdout(user_codes, test_ratio, np.random.default_rng([seed, 0]))
    return frame[~held], frame[held]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ratings", type=Path, help="ml-100k u.data")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--test-ratio", type=float, default=0.25)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    frame = pd.read_csv(args.ratings, sep="\t", names=COLUMNS, dtype=str)
    train, test = split_frame(frame, args.test_ratio, args.seed)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, part in (("TRAIN.tsv", train), ("TEST.tsv", test)):
        part.to_csv(args.out_dir / name, sep="\t", header=False, index=False)
    print(
        f"{args.out_dir / 'TRAIN.tsv'}: {len(train)} rows; {args.out_dir / 'TEST.tsv'}: "
        f"{len(test)} rows ({test['user_id'].nunique()} users)"
    )


if __name__ == "__main__":
    main()
