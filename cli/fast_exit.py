"""Leave without the interpreter's teardown once a command has finished.

Imported first by the `cli` package, so its atexit handler is registered before any other and
runs after all of them (atexit runs handlers last-in, first-out): logging's flush and ZenML's
and multiprocessing's handlers have run by then. Skipping the teardown of some 3,000 modules and
500,000 objects (ZenML, SQLAlchemy, pydantic models) saves about 1 s of the 5-6 s a cached
rerun of `python run.py` takes. Nothing of the command is left to write: the store's
transactions are committed, artifacts and logs closed; stdout and stderr are flushed here. Only
when `main()` finished and recorded its exit code: an uncaught exception keeps the normal exit.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import sys

# The code the command leaves with, once it has finished (None: it has not, or was not run).
exit_code: int | None = None


def record(code: object) -> None:
    """Record a finished command's SystemExit code, as the interpreter would read it: None is 0,
    a message (printed by the interpreter) is 1."""
    global exit_code
    exit_code = code if isinstance(code, int) else (0 if code is None else 1)


def _exit_without_teardown() -> None:
    if exit_code is None:
        return
    for stream in (sys.stdout, sys.stderr):
        # Closed, or a broken pipe: nothing more can be written.
        with contextlib.suppress(OSError, ValueError):
            stream.flush()
    os._exit(exit_code)


atexit.register(_exit_without_teardown)
