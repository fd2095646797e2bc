"""`run.py` as a user types it, in processes of their own on a ZenML store of their own."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.conftest import PROJECT_ROOT


def environment(state: Path) -> dict[str, str]:
    """A fresh ZenML store, BentoML home and Optuna state under `state`."""
    return {
        **os.environ,
        "ZENML_CONFIG_PATH": str(state / "zenml"),
        "BENTOML_HOME": str(state / "bentoml"),
        "WALSREC_STATE_DIR": str(state / "walsrec"),
        "ZENML_LOGGING_COLORS_DISABLED": "true",  # step lines are matched as plain text
    }


class Command:
    """`run.py ARGS` as a process whose output lines are collected as they come."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            [sys.executable, "run.py", *args],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def output(self) -> str:
        return "".join(self.lines)

    def wait_for(self, text: str, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while text not in self.output:
            assert self.process.poll() is None or text in self.output, self.output[-3000:]
            assert time.monotonic() < deadline, f"no {text!r} within {timeout} s"
            time.sleep(0.1)

    def finish(self, timeout: float = 600) -> int:
        code = self.process.wait(timeout=timeout)
        self._reader.join(timeout=10)
        return code


def run_command(
    env: dict[str, str], *args: str, timeout: float = 600
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run.py", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
