"""Command line: choose a pipeline, a config and data; everything else lives in configs/*.yaml.

python run.py                      # train on MovieLens 100K with configs/train.yaml
python run.py --data PATH          # train on a local copy or your own interactions file
python run.py batch --topk-output recs.csv
python run.py --help

The commands live in the `cli` package (the `walsrec` script and `python -m walsrec` run the
same ones); the names below are the ones scripts and tests use.
"""

from __future__ import annotations

import sys

from cli import cli, main
from cli.configs import CONFIGS, PIPELINES, UserError, load_config
from cli.runs import run_pipeline

__all__ = ["CONFIGS", "PIPELINES", "UserError", "cli", "load_config", "main", "run_pipeline"]

if __name__ == "__main__":
    sys.exit(main())
