"""Progress bars only where someone watches them.

A tqdm bar redraws itself with carriage returns: on a terminal that is one line that moves, in
a log file, a pod's log or CI's output it is a new line per update beside the loop's own log
lines. So a loop shows a bar when it is asked to and stderr (where tqdm draws) is a terminal,
and otherwise its per-step log line is the only display.
"""

from __future__ import annotations

import sys
from typing import Any


def progress_bar(enabled: bool, **tqdm_arguments: Any) -> Any:
    """A tqdm bar if `enabled` and stderr is a terminal, else None.

    Args:
        enabled: whether the caller's config asks for progress (e.g. `evaluation.progress`).
        **tqdm_arguments: passed to `tqdm.tqdm` (total, desc, unit, initial).
    """
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(**tqdm_arguments)
