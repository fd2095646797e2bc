"""Score a top-k file and/or a predictions file against a test file, independently of walsrec.

python bench/quality/score.py --train TRAIN.tsv --test TEST.tsv [--recs RECS.csv] [--pred PRED.csv]

Plain pandas, written from the definitions (Microsoft Recommenders' conventions): for each test
user, the first k recommended items that the user did not have in TRAIN; a hit is an item in
the user's TEST set; precision@k = hits / k, recall@k = hits / |test items|, ndcg@k with binary
gains, map@k = sum of precision at hit positions / min(|test items|, k); averaged over users
with test items (a user without recommendations scores 0). RMSE/MAE over every TEST pair (a
missing prediction is an error).
"""

from __future__ import annotations

import argparse
import math

import numpy as np
import pandas as pd

COLUMNS = ["user_id", "item_id", "rating", "timestamp"]


def read_ratings(path: str) -> pd.DataFrame:
    """A u.data-layout file (tab-separated, no header)."""
    return pd.read_csv(path, sep="\t", names=COLUMNS, dtype={"user_id": str, "item_id": str})


def ranking_scores(train: pd.DataFrame, test: pd.DataFrame, recs: pd.DataFrame, k: int) -> dict:
    """precision, recall, ndcg and map at k over the users with test items."""
    seen = set(zip(train["user_id"], train["item_id"], strict=True))
    relevant = test.groupby("user_id")["item_id"].apply(set).to_dict()
    recs = recs.sort_values(["user_id", "rank"])
    lists = recs.groupby("user_id")["item_id"].apply(list).to_dict()
    totals = {"precision": 0.0, "recall": 0.0, "ndcg": 0.0, "map": 0.0}
    for user, items in relevant.items():
        ranked = [item for item in lists.get(user, []) if (user, item) not in seen][:k]
        hits = [item in items for item in ranked]
        n_hits = sum(hits)
        dcg = sum(1 / math.log2(pos + 2) for pos, hit in enumerate(hits) if hit)
        idcg = sum(1 / math.log2(pos + 2) for pos in range(min(len(items), k)))
        running, average_precision = 0, 0.0
        for pos, hit in enumerate(hits):
            if hit:
                running += 1
                average_precision += running / (pos + 1)
        totals["precision"] += n_hits / k
        totals["recall"] += n_hits / len(items)
        totals["ndcg"] += dcg / idcg
        totals["map"] += average_precision / min(len(items), k)
    return {f"{name}@{k}": total / len(relevant) for name, total in totals.items()}


def rating_scores(test: pd.DataFrame, predictions: pd.DataFrame) -> dict:
    """rmse and mae over every test pair."""
    merged = test.merge(
        predictions.astype({"user_id": str, "item_id": str}),
        on=["user_id", "item_id"],
        how="left",
    )
    missing = int(merged["prediction"].isna().sum())
    if missing:
        raise SystemExit(f"{missing} test pairs have no prediction")
    error = merged["prediction"].to_numpy(float) - merged["rating"].to_numpy(float)
    return {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error)))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--recs")
    parser.add_argument("--pred")
    parser.add_argument("-k", type=int, default=10)
    args = parser.parse_args()
    train, test = read_ratings(args.train), read_ratings(args.test)
    if args.recs:
        recs = pd.read_csv(args.recs, dtype={"user_id": str, "item_id": str})
        for name, value in ranking_scores(train, test, recs, args.k).items():
            print(f"{name:14s} {value:.4f}")
    if args.pred:
        for name, value in rating_scores(test, pd.read_csv(args.pred)).items():
            print(f"{name:14s} {value:.4f}")


if __name__ == "__main__":
    main()
