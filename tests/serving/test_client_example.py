"""The README's Python client example, run as written against a real `bentoml serve`."""

from __future__ import annotations

import json
import subprocess
import sys

from tests.conftest import PROJECT_ROOT
from tests.serving.conftest import LiveServer


def test_client_example_calls_the_service(live_server: LiveServer, model) -> None:
    command = [
        sys.executable, "examples/client.py", "--url", live_server.url, "--user", "u0",
        "--token", live_server.token, "-k", "4",
    ]  # fmt: skip
    result = subprocess.run(
        command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr[-2000:]
    lines = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    assert f"{model.n_users} users x {model.n_items} items" in result.stdout
    top = json.loads(lines["recommend"])
    assert len(top) == 4 and not {"i0", "i1", "i2", "i3", "i4"} & set(top)  # u0's seen items
    assert json.loads(lines["rank"]) == top  # the reversed list, ranked back into order
    assert len(json.loads(lines["recommend_for_items"])) == 4
    assert "k" in lines["k=0 refused"]
