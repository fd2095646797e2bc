"""Runs whose process died, and the model versions they left without a model.

A run started by `run.py` on the local orchestrator holds a lock file named after the run for
as long as its process lives (`run_liveness`); the kernel drops the lock when the process dies,
SIGKILL included. A run that ZenML still shows as running while nobody holds its lock is dead:
`clean_up_runs` marks it (and its unfinished steps) failed, and deletes the model version it
created if that version holds no model and no other run is linked to it.

Lock files live in ZenML's config folder, so a run is judged only on the machine that started
it; runs of other machines and of remote orchestrators (Kubeflow pods) are left to their
orchestrator, which reports their state itself.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

from registry.versions import has_model
from walsrec.locks import file_lock, is_locked, read_holder

UNFINISHED = ("initializing", "provisioning", "queued", "running")


def liveness_dir() -> Path:
    from zenml.utils.io_utils import get_global_config_directory

    return Path(get_global_config_directory()) / "walsrec-runs"


def _lock_path(run_name: str) -> Path:
    return liveness_dir() / (re.sub(r"[^A-Za-z0-9._-]", "_", run_name) + ".lock")


def new_run_name(pipeline_name: str) -> str:
    """A unique run name, known before the run starts (so its liveness lock can be taken)."""
    import uuid

    return f"{pipeline_name}-{datetime.now():%Y_%m_%d-%H_%M_%S}-{uuid.uuid4().hex[:6]}"


@contextlib.contextmanager
def run_liveness(run_name: str) -> Iterator[None]:
    """Hold the run's liveness lock while the `with` block (the run) lasts."""
    path = _lock_path(run_name)
    with file_lock(path, timeout=0, purpose=f"run {run_name}"):
        yield
    path.unlink(missing_ok=True)


def _is_dead(run: Any) -> bool:
    """The run's process died: its lock file exists, was taken on this host, and nobody holds
    it. No lock file (a run started otherwise, or elsewhere): not judged."""
    path = _lock_path(run.name)
    if not path.exists() or is_locked(path):
        return False
    holder = read_holder(path)
    return not holder or holder.get("host") in (None, socket.gethostname())


def _unfinished_runs(client: Any) -> list[Any]:
    runs = []
    for status in UNFINISHED:
        runs += client.list_pipeline_runs(status=status, size=100, sort_by="desc:created").items
    return runs


def _mark_failed(client: Any, run: Any, reason: str) -> None:
    from zenml.enums import ExecutionStatus
    from zenml.models import PipelineRunUpdate, StepRunUpdate

    for step in client.list_run_steps(pipeline_run_id=run.id, size=100).items:
        if step.status.value in UNFINISHED:
            client.zen_store.update_run_step(
                step.id, StepRunUpdate(status=ExecutionStatus.FAILED, end_time=datetime.now())
            )
    client.zen_store.update_run(
        run.id, PipelineRunUpdate(status=ExecutionStatus.FAILED, status_reason=reason)
    )
    with contextlib.suppress(OSError):
        _lock_path(run.name).unlink()


def delete_modelless_version(client: Any, run: Any) -> str | None:
    """Delete the model version `run` created when it holds no model and no other run is linked
    to it. Returns "model NAME version N" when it was deleted."""
    version = run.model_version
    if version is None or has_model(version):
        return None
    links = client.list_model_version_pipeline_run_links(model_version_id=version.id, size=100)
    if any(link.pipeline_run.id != run.id for link in links.items):
        return None
    client.delete_model_version(version.id)
    return f"model {version.model.name} version {version.number}"


def clean_up_runs(include_failed: bool = True) -> list[str]:
    """Mark dead runs failed and delete the model versions they left without a model.

    Args:
        include_failed: also look at the newest 100 failed runs for versions without a model
            (`run.py cleanup`; before each pipeline run only the unfinished runs are read).

    Returns:
        One line per run dealt with, naming it.
    """
    from zenml.client import Client

    client = Client()
    lines = []
    for run in _unfinished_runs(client):
        if not _is_dead(run):
            continue
        _mark_failed(client, run, "its process died (found by run.py cleanup)")
        deleted = delete_modelless_version(client, client.get_pipeline_run(run.id))
        what = f"; deleted {deleted}, which it had created without a model" if deleted else ""
        lines.append(f"run {run.name} ({run.pipeline.name}) had died: marked failed{what}")
    failed = client.list_pipeline_runs(status="failed", size=100, sort_by="desc:created")
    for run in failed.items if include_failed else []:
        deleted = delete_modelless_version(client, run)
        if deleted:
            lines.append(
                f"run {run.name} ({run.pipeline.name}) failed: deleted {deleted}, "
                "which it had created without a model"
            )
    return lines
