"""Import TensorFlow without its start-up lines.

TensorFlow 2.21 writes two lines to the process's stderr (file descriptor 2, from C++) each
time one of its two native libraries starts, whatever `TF_CPP_MIN_LOG_LEVEL` says:
"WARNING: All log messages before absl::InitializeLog() is called are written to STDERR" and
"I0000 ... port.cc:153] oneDNN custom operations are on ...": four lines of noise at the top of
every training run. The import runs with descriptor 2 pointed at a temporary file; afterwards
every line but those is written to stderr, so a real warning or error still shows.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
from types import ModuleType

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

START_UP_LINES = (
    re.compile(rb"WARNING: All log messages before absl::InitializeLog\(\) is called are written"),
    re.compile(rb"I\d{4} [\d:.]+ +\d+ port\.cc:\d+\] oneDNN custom operations are on\."),
)


def import_tensorflow() -> ModuleType:
    """`import tensorflow`, with TensorFlow's start-up lines left out of stderr."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr: nothing to keep clean
        import tensorflow

        return tensorflow
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().splitlines(keepends=True)
            kept = [line for line in lines if not any(p.match(line) for p in START_UP_LINES)]
            if kept:
                os.write(2, b"".join(kept))
    return tensorflow
