"""`pip install .` into a fresh virtual environment, then the commands it installs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from tests.conftest import PROJECT_ROOT

NOT_SOURCE = shutil.ignore_patterns(
    ".git", ".venv", "state", "outputs", "build", "*.egg-info", "__pycache__", ".*_cache"
)


def _run(*args: str | Path, cwd: Path) -> subprocess.CompletedProcess:
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    return subprocess.run(
        [str(arg) for arg in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_pip_install_gives_the_walsrec_command(tmp_path: Path) -> None:
    """The wheel holds every package, the configs and the kernel's source; `walsrec` and
    `python -m walsrec` run the CLI of run.py from anywhere."""
    source = tmp_path / "source"  # a copy: a build writes build/ and *.egg-info beside the code
    shutil.copytree(PROJECT_ROOT, source, ignore=NOT_SOURCE)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_path('purelib'))"
    site = _run(python, "-c", purelib, cwd=tmp_path)
    site_packages = Path(site.stdout.strip())
    # Offline: pip, setuptools and the dependencies come from this interpreter's environment,
    # seen after the new one's own site-packages (where the project goes).
    # A site dir, so that its own .pth files run too: on Python 3.12+ setuptools' distutils
    # shim (which ZenML imports) is installed by one, as it is in a real `pip install .`.
    outer = sysconfig.get_path("purelib")
    (site_packages / "outer.pth").write_text(f"import site; site.addsitedir({outer!r})\n")

    install = _run(
        python, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
        "--disable-pip-version-check", str(source), cwd=tmp_path,
    )  # fmt: skip
    assert install.returncode == 0, install.stdout[-2000:] + install.stderr[-3000:]

    elsewhere = tmp_path / "elsewhere"  # no source tree on sys.path
    elsewhere.mkdir()
    where = _run(
        python, "-c",
        "import run, cli, walsrec, steps, pipelines, registry, stacks, serving, materializers; "
        "print(run.__file__); print(walsrec.__file__)", cwd=elsewhere,
    )  # fmt: skip
    assert where.returncode == 0, where.stderr[-3000:]
    assert all(line.startswith(str(site_packages)) for line in where.stdout.split()), where.stdout
    for data_file in (
        "configs/train.yaml",
        "configs/tune.yaml",
        "configs/kubeflow/common.yaml",
        "stacks/kubeflow.yaml",
        "serving/bentofile.yaml",
        "walsrec/native/wals_ops.cc",
    ):
        assert (site_packages / data_file).is_file(), data_file

    script = _run(venv / "bin" / "walsrec", "--help", cwd=elsewhere)
    module = _run(python, "-m", "walsrec", "--help", cwd=elsewhere)
    for result in (script, module):
        assert result.returncode == 0, result.stderr[-3000:]
        assert "Train by default" in result.stdout or "python run.py" in result.stdout
        for command in ("train", "batch", "tune", "deploy", "serve", "stack"):
            assert f"  {command}" in result.stdout

    version = _run(python, "-m", "walsrec", "--version", cwd=elsewhere)
    assert version.stdout.strip().startswith("walsrec ")
    # The installed configs are read and checked (section keys from the installed sources).
    missing = elsewhere / "missing.csv"
    for args, message in (
        (["--data", str(missing)], f"error: --data: data source '{missing}' not found"),
        (["tune", "--n-trials", "1", "--data", str(missing)], "error: --data: data source"),
    ):
        result = _run(venv / "bin" / "walsrec", *args, cwd=elsewhere)
        assert result.returncode == 1 and message in result.stderr, result.stderr[-3000:]
