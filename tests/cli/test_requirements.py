"""Runtime pins (requirements.txt, what a Kubeflow image installs) apart from the tests' and
development tools (requirements-dev.txt): the runtime set is complete and the images carry no
dev package."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import pytest
from packaging.markers import default_environment
from packaging.requirements import Requirement

import run as cli
from stacks.overlay import apply_stack_overlay, pipeline_config_path
from stacks.register import load_recipe
from tests.conftest import PROJECT_ROOT

RUNTIME_PACKAGES = [
    "cli",
    "walsrec",
    "steps",
    "pipelines",
    "registry",
    "stacks",
    "serving",
    "materializers",
]
PIPELINES = [
    "training_pipeline",
    "batch_inference_pipeline",
    "tuning_pipeline",
    "deployment_pipeline",
]


def _name(line: str) -> str:
    return re.sub(r"[-_.]+", "-", re.split(r"[\s\[<>=!~;@]", line, maxsplit=1)[0]).lower()


def _pins(file: str) -> dict[str, str]:
    lines = (PROJECT_ROOT / file).read_text(encoding="utf-8").splitlines()
    pins = {}
    for line in lines:
        line = line.split("#", 1)[0].strip()
        if line and not line.startswith("-r "):
            assert "==" in line, f"{file}: {line!r} is not pinned with =="
            pins[_name(line)] = line
    return pins


RUNTIME, DEV = _pins("requirements.txt"), _pins("requirements-dev.txt")
DEV_ONLY = set(DEV) - set(RUNTIME)


def test_dev_file_adds_the_tools_to_the_runtime_pins() -> None:
    lines = (PROJECT_ROOT / "requirements-dev.txt").read_text(encoding="utf-8").splitlines()
    assert "-r requirements.txt" in lines
    assert {"pytest", "pytest-timeout", "ruff", "schemathesis", "hypothesis"} <= DEV_ONLY
    assert RUNTIME["zenml"] == "zenml[local]==0.98.0" and DEV["zenml"] == "zenml[server]==0.98.0"
    assert set(RUNTIME) & set(DEV) == {"zenml"}  # the same version, the server's extra on top


def _requirements_of(name: str, extras: set[str]) -> list[Requirement]:
    environment = default_environment()
    wanted = []
    for line in metadata.distribution(name).requires or []:
        requirement = Requirement(line)
        if requirement.marker is None or any(
            requirement.marker.evaluate({**environment, "extra": extra}) for extra in {"", *extras}
        ):
            wanted.append(requirement)
    return wanted


def test_runtime_pins_hold_every_dependency_of_the_runtime_pins() -> None:
    """The installed metadata of each runtime pin (its extras included) needs only packages
    that requirements.txt pins, at versions within the ranges asked for."""
    missing = []
    for name, line in RUNTIME.items():
        extras = Requirement(line).extras
        assert metadata.version(name) == line.split("==")[1], f"{line} is not what is installed"
        for requirement in _requirements_of(name, extras):
            dependency = _name(requirement.name)
            if dependency not in RUNTIME:
                missing.append(f"{line} needs {requirement}")
            elif not requirement.specifier.contains(RUNTIME[dependency].split("==")[1], True):
                missing.append(f"{line} needs {requirement}, pinned {RUNTIME[dependency]}")
    assert not missing, missing


def _third_party_imports() -> dict[str, str]:
    """Top-level modules the runtime code imports -> a file that imports it."""
    files = [PROJECT_ROOT / "run.py"]
    for package in RUNTIME_PACKAGES:
        files += sorted((PROJECT_ROOT / package).rglob("*.py"))
    local = set(RUNTIME_PACKAGES) | {"run", "tests"}
    found: dict[str, str] = {}
    for file in files:
        for node in ast.walk(ast.parse(file.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                if top not in local and top not in sys.stdlib_module_names:
                    found.setdefault(top, str(file.relative_to(PROJECT_ROOT)))
    return found


def test_the_code_imports_only_runtime_packages() -> None:
    distributions = metadata.packages_distributions()
    outside = {}
    for module, where in _third_party_imports().items():
        names = {_name(dist) for dist in distributions.get(module, [])}
        assert names, f"{where} imports {module}, which no installed distribution provides"
        if not names & set(RUNTIME):
            outside[module] = (where, sorted(names))
    assert not outside, f"imported by runtime code, pinned only for development: {outside}"


@pytest.mark.parametrize("pipeline_name", PIPELINES)
def test_kubeflow_images_install_no_dev_package(pipeline_name: str) -> None:
    path = pipeline_config_path(pipeline_name)
    config = cli.load_config(path) if path else {"parameters": {}}
    overlaid = apply_stack_overlay(config, load_recipe("kubeflow").overlay_dir, pipeline_name)
    images = [overlaid["settings"]["docker"]["requirements"]]
    for step in (overlaid.get("steps") or {}).values():
        docker = ((step or {}).get("settings") or {}).get("docker") or {}
        if "requirements" in docker:
            images.append(docker["requirements"])
    for requirements in images:
        names = {_name(line) for line in requirements}
        assert names & DEV_ONLY == set(), sorted(names & DEV_ONLY)
        assert not any(line.startswith("zenml[server]") for line in requirements)
        assert "zenml" in names


# Imports of the modules of development-only distributions fail, as in an image without them.
_WITHOUT_DEV = """
import importlib.abc, runpy, sys
BLOCKED = set(sys.argv[1].split(","))
class Blocker(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r} (development only)", name=name)
        return None
sys.meta_path.insert(0, Blocker())
sys.argv = ["run.py", *sys.argv[2:]]
runpy.run_path("run.py", run_name="__main__")
"""


def test_train_and_batch_run_without_the_dev_packages(ml100k_dir: Path, tmp_path: Path) -> None:
    distributions = metadata.packages_distributions()
    blocked = sorted(
        module
        for module, names in distributions.items()
        if {_name(name) for name in names} <= DEV_ONLY and not module.startswith("_")
    )
    assert {"pytest", "ruff", "schemathesis", "fastapi", "hypothesis"} <= set(blocked)
    env = {**os.environ, "ZENML_CONFIG_PATH": str(tmp_path / "zenml")}

    def run(*args: str) -> str:
        result = subprocess.run(
            [sys.executable, "-c", _WITHOUT_DEV, ",".join(blocked), *args],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        return result.stdout

    assert "Model version:  walsrec version 1" in run("--data", str(ml100k_dir))
    assert "wrote 9430 top-k rows" in run("batch", "--topk-output", str(tmp_path / "r.csv"))
