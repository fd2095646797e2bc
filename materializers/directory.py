"""Copying a local folder of plain files to and from the artifact store.

The core writes and reads its artifacts as folders on local disk; these helpers move such a
folder through whatever artifact store the stack has (local disk, S3, GCS, MinIO), so the same
materializer works on the laptop and on Kubeflow.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from zenml.artifact_stores.base_artifact_store import BaseArtifactStore

T = TypeVar("T")


def upload_folder(store: BaseArtifactStore, write: Callable[[Path], None], uri: str) -> None:
    """Let `write` fill a temp folder, then copy each file under `uri` in the store."""
    with tempfile.TemporaryDirectory(prefix="walsrec-") as tmp:
        write(Path(tmp))
        for root, _, files in os.walk(tmp):
            relative = os.path.relpath(root, tmp)
            target_dir = uri if relative == "." else os.path.join(uri, relative)
            store.makedirs(target_dir)
            for name in files:
                with (
                    open(os.path.join(root, name), "rb") as source,
                    store.open(os.path.join(target_dir, name), "wb") as target,
                ):
                    shutil.copyfileobj(source, target)


def download_folder(store: BaseArtifactStore, read: Callable[[Path], T], uri: str) -> T:
    """Copy the files under `uri` into a temp folder and let `read` load them."""
    with tempfile.TemporaryDirectory(prefix="walsrec-") as tmp:
        _copy_down(store, uri, Path(tmp))
        return read(Path(tmp))


def _copy_down(store: BaseArtifactStore, uri: str, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in store.listdir(uri):
        name = name.decode() if isinstance(name, bytes) else str(name)
        source = os.path.join(uri, name)
        if store.isdir(source):
            _copy_down(store, source, target / name)
            continue
        with store.open(source, "rb") as reader, open(target / name, "wb") as writer:
            shutil.copyfileobj(reader, writer)
