"""The command line of `python run.py`, the `walsrec` script and `python -m walsrec`.

`configs` chooses each command's pipeline and YAML and checks them before anything runs,
`options` holds the options commands share, `runs` runs a pipeline and reports on it, and
`commands` the click commands themselves.
"""

# First: its atexit handler must be registered before any other (cli/fast_exit.py).
from cli import fast_exit  # noqa: F401, I001

import os  # noqa: E402

# Before anything imports TensorFlow, and inherited by the processes a command starts.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from cli.commands import cli, main  # noqa: E402

__all__ = ["cli", "main"]
