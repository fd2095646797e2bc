"""Call a running walsrec service from Python with BentoML's own client.

    python run.py serve &                      # or: bentoml serve walsrec:<bento-version>
    python examples/client.py --url http://127.0.0.1:3000 --user 196 [--token $WALSREC_API_TOKEN]

`bentoml.SyncHTTPClient` reads the service's OpenAPI document (/docs.json) and exposes every
endpoint as a method taking the request fields as keyword arguments; answers are plain dicts.
A 4xx raises `bentoml.exceptions.BentoMLException` whose message is the service's error (it
names the field at fault).
"""

from __future__ import annotations

import argparse
import json
import os

import bentoml
from bentoml.exceptions import BentoMLException


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000")
    parser.add_argument("--user", required=True, help="a user id the model knows")
    parser.add_argument("--token", default=os.environ.get("WALSREC_API_TOKEN"))
    parser.add_argument("-k", type=int, default=5)
    arguments = parser.parse_args()

    with bentoml.SyncHTTPClient(arguments.url, token=arguments.token) as client:
        info = client.model_info()
        print(f"model {info['model_name']} version {info['model_version']}: "
              f"{info['n_users']} users x {info['n_items']} items")  # fmt: skip
        top = client.recommend(user_id=arguments.user, k=arguments.k)
        print("recommend:", json.dumps([item["item_id"] for item in top["items"]]))
        candidates = [item["item_id"] for item in top["items"]][::-1]
        ranked = client.rank(user_id=arguments.user, item_ids=candidates)
        print("rank:", json.dumps([item["item_id"] for item in ranked["items"]]))
        new_user = client.recommend_for_items(item_ids=candidates[:2], k=arguments.k)
        print("recommend_for_items:", json.dumps([item["item_id"] for item in new_user["items"]]))
        try:
            client.recommend(user_id=arguments.user, k=0)
        except BentoMLException as error:
            print("k=0 refused:", str(error)[:120])


if __name__ == "__main__":
    main()
