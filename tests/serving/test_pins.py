"""The Bento installs exact pins: every package the service needs, as requirements.txt pins it."""

from __future__ import annotations

import subprocess
import sys

from serving import pins
from tests.conftest import PROJECT_ROOT


def test_bento_requirements_are_current_and_exact() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "serving.pins", "--check"],
        cwd=PROJECT_ROOT, capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    listed = pins.project_pins(pins.BENTO_REQUIREMENTS)
    project = pins.project_pins()
    # What the service runs on, reached only through other packages' requirements, is pinned.
    assert {"bentoml", "numpy", "scipy", "pydantic", "httptools", "uvicorn", "starlette"} <= set(
        listed
    )
    assert all(project[name] == version for name, version in listed.items())
    # Nothing of the training side rides along.
    assert not {"tensorflow-cpu", "zenml", "optuna", "pandas", "pytest"} & set(listed)


def test_a_pin_changed_in_requirements_txt_changes_the_bento_pins(tmp_path) -> None:
    changed = tmp_path / "requirements.txt"
    text = pins.REQUIREMENTS.read_text()
    numpy_pin = next(line for line in text.splitlines() if line.startswith("numpy=="))
    changed.write_text(text.replace(numpy_pin, "numpy==1.0.0"))
    rendered = pins.render(changed)
    assert "numpy==1.0.0\n" in rendered
    assert rendered != pins.BENTO_REQUIREMENTS.read_text()  # so --check would fail
