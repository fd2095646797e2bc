"""Running the command line as a user types it: in-process (click's runner) or in a fresh
interpreter, which tells what the command imported before it stopped."""

from __future__ import annotations

import json
import logging
import subprocess
import sys

import pytest

import run
from cli import runs
from tests.conftest import PROJECT_ROOT


class Captured(run.UserError):
    """Raised in place of a pipeline run."""


@pytest.fixture
def captured(monkeypatch: pytest.MonkeyPatch) -> dict:
    """Replace the pipeline run: record the config, stack and log level it would run with."""
    seen: dict = {}

    def fake_run(pipeline_obj, config):
        seen.update(
            pipeline=pipeline_obj.name,
            config=config,
            stack=runs.selected_stack(),
            debug=logging.getLogger("walsrec").level == logging.DEBUG,
        )
        raise Captured("captured")

    monkeypatch.setattr(runs, "run_pipeline", fake_run)
    yield seen
    for name in ("walsrec", "steps", "pipelines"):
        logging.getLogger(name).setLevel(logging.INFO)


_PROBE = """
import json, sys
from click.testing import CliRunner
import run
result = CliRunner().invoke(run.cli, sys.argv[1:])
print(json.dumps({"exit_code": result.exit_code, "output": result.output,
                  "imported": sorted({"tensorflow", "zenml"} & set(sys.modules))}))
"""


def run_python(code: str, *args: str, timeout: float = 120) -> object:
    """Run `code` in a new interpreter in the project's root, with `args` as its argv: the JSON
    of the last line it printed."""
    probe = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    return json.loads(probe.stdout.splitlines()[-1])


def probe_cli(*args: str) -> dict:
    """Run the command in a new interpreter: its exit code, output, and which of TensorFlow
    and ZenML it had imported by the time it returned."""
    return run_python(_PROBE, *args)
