"""Fixtures for compiling pipelines to the Kubeflow spec offline (temp ZenML store, no cluster)."""

from __future__ import annotations

import pytest

REPOSITORY = "registry.example.com/walsrec-test/zenml"
# A value only the ZenML secret holds: it must never appear in a compiled spec.
OPTUNA_STORAGE_SECRET = "postgresql://tuner:s3cr3t-never-in-spec@db.example.com/optuna"


@pytest.fixture(scope="session")
def kubeflow_secrets() -> dict[str, str]:
    """The ZenML secrets the Kubeflow overlay names, created in the test session's store."""
    from zenml.client import Client

    client = Client()
    if not client.list_secrets(name="walsrec-optuna").total:
        client.create_secret("walsrec-optuna", {"WALSREC_TUNING_STORAGE": OPTUNA_STORAGE_SECRET})
    return {"WALSREC_TUNING_STORAGE": OPTUNA_STORAGE_SECRET}
