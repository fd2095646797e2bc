"""`bentoml containerize` of the service's Bento, run and answering HTTP: where a Docker engine is.

Skipped, saying why, on machines without one (the development and CI machines of this project
have the docker CLI but no engine). The image installs serving/requirements-bento.txt's exact
pins, so a build on another day gets the same versions.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import urllib.request

import pytest

from serving.cli import wait_until_ready
from serving.packaging import build_bento
from tests.serving.conftest import free_port


def _docker_engine() -> str | None:
    """None when a Docker engine answers, else why not."""
    if shutil.which("docker") is None:
        return "no docker CLI on this machine"
    probe = subprocess.run(
        ["docker", "info", "--format", "{{.ServerVersion}}"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    if probe.returncode != 0:
        return (
            "no Docker engine: " + (probe.stderr.strip().splitlines() or ["docker info failed"])[-1]
        )
    return None


NO_ENGINE = _docker_engine()


@pytest.mark.skipif(NO_ENGINE is not None, reason=str(NO_ENGINE))
def test_containerized_bento_serves_recommendations(packaged_model: str) -> None:
    bento_tag = build_bento(packaged_model)
    image = f"walsrec-test:{bento_tag.split(':')[1]}"
    subprocess.run(
        [sys.executable, "-m", "bentoml", "containerize", bento_tag, "-t", image],
        check=True, timeout=1800,
    )  # fmt: skip
    port = free_port()
    # Host networking: the service binds 127.0.0.1 by design, so the port is the host's.
    container = subprocess.run(
        ["docker", "run", "-d", "--rm", "--network", "host", "-e", f"BENTOML_PORT={port}", image],
        capture_output=True, text=True, check=True, timeout=120,
    ).stdout.strip()  # fmt: skip
    watcher = subprocess.Popen(["docker", "wait", container], stdout=subprocess.DEVNULL)
    try:
        wait_until_ready(f"http://127.0.0.1:{port}/readyz", watcher, timeout=180)
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/recommend",
            json.dumps({"user_id": "u0", "k": 3}).encode(),
            {"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        assert len(answer["items"]) == 3 and answer["fallback"] is False
    finally:
        subprocess.run(["docker", "stop", container], check=False, timeout=60)
        watcher.wait(timeout=60)
