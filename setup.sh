#!/usr/bin/env bash
# Create the virtual environment in .venv and install the pinned requirements. Idempotent: a
# second run only checks that everything is installed.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}  # another folder for a second Python: VENV=.venv-3.12 PYTHON=python3.12
# The pins of requirements.txt install on Python 3.11 to 3.13 (ZenML, TensorFlow and BentoML
# support 3.10 too, but numpy 2.4, pandas 3 and scipy 1.17 need 3.11).
if ! "$PYTHON" -c 'import sys; sys.exit(not (3, 11) <= sys.version_info[:2] <= (3, 13))'; then
    echo "error: the pinned requirements need Python 3.11 to 3.13, $PYTHON is" \
        "$("$PYTHON" -V 2>&1); set PYTHON=/path/to/python3.12 (for example)" >&2
    exit 1
fi
if [ ! -x "$VENV/bin/python" ]; then
    "$PYTHON" -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --upgrade "pip==26.3"
# requirements-dev.txt: the runtime pins of requirements.txt (what a Kubeflow image installs) plus
# the tests' and development tools; configs/kubeflow/requirements-remote.txt: what the Kubeflow
# image adds (the S3 filesystem), so tests/kubeflow/test_execute.py runs the compiled tasks with
# the packages their image has.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt \
    -r configs/kubeflow/requirements-remote.txt
# The fused WALS kernel (a TensorFlow custom op, walsrec/native): compiled once per TensorFlow
# version and CPU into ~/.cache/walsrec/native (about a minute). Without a C++ compiler WALS
# still works, on standard TensorFlow ops (slower).
"$VENV/bin/python" -m walsrec.native || echo "warning: WALS will run without its fused kernel" >&2
