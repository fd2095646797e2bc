"""Shared fixtures. Every test runs with ZenML and BentoML state in temp dirs and analytics off."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

PROJECT_ROOT = Path(__file__).resolve().parent.parent

# Set before any test module imports zenml or bentoml, so no test touches a user's state.
_STATE = Path(tempfile.mkdtemp(prefix="walsrec-tests-"))
os.environ["ZENML_ANALYTICS_OPT_IN"] = "false"
os.environ["ZENML_ENABLE_RICH_TRACEBACK"] = "false"
os.environ["BENTOML_DO_NOT_TRACK"] = "true"
os.environ["ZENML_CONFIG_PATH"] = str(_STATE / "zenml")
os.environ["BENTOML_HOME"] = str(_STATE / "bentoml")
os.environ["WALSREC_CACHE_DIR"] = str(_STATE / "cache")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the session's ZenML, BentoML and cache state: each full run writes about a GB there,
    and a machine that runs the suite many times (CI runs it twice) must not fill its disk."""
    shutil.rmtree(_STATE, ignore_errors=True)


def ml100k_path() -> Path:
    """MovieLens 100K as shipped in shared/ (never committed: its licence forbids it)."""
    return Path(os.environ.get("WALSREC_ML100K", PROJECT_ROOT.parent / "shared/data/ml-100k"))


@pytest.fixture(scope="session")
def ml100k_dir() -> Path:
    path = ml100k_path()
    if not (path / "u.data").is_file():
        pytest.fail(
            f"MovieLens 100K not found at {path}: set WALSREC_ML100K to a folder holding u.data"
        )
    return path
