"""Read a data source given as a URL (s3://, gs://, ...) through the stack's artifact store.

On Kubeflow each step is a pod: a path on the machine that started the run does not exist there,
so the data has to be where the pods can read it, for instance the bucket of the stack's artifact
store. ZenML's file I/O opens such URLs with the artifact store's filesystem and credentials (the
ZenML secret the stack names), so a pod needs nothing else to read them.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
import tempfile
from collections.abc import Iterator

from walsrec.errors import DataError


def is_remote(source: str) -> bool:
    """Whether `source` is a URL a filesystem plugin reads (s3://, gs://), not a local path."""
    return "://" in source and not source.startswith("file://")


@contextlib.contextmanager
def local_copy(source: str) -> Iterator[str]:
    """`source` itself when it is local, else a local copy of the file or folder it names.

    Args:
        source: a local path, a dataset name, or a URL the active stack's artifact store reads.

    Yields:
        A local path (the copy is deleted on exit).

    Raises:
        DataError: the URL can't be read with the stack's artifact store, naming it.
    """
    if not is_remote(source):
        yield source
        return
    from zenml.client import Client

    store = Client().active_stack.artifact_store
    schemes = sorted(s for s in getattr(store.config, "SUPPORTED_SCHEMES", ()) if "://" in s)
    filesystem = getattr(store, "filesystem", None)
    if filesystem is None or not any(source.startswith(scheme) for scheme in schemes):
        raise DataError(
            f"data source {source}: a URL is read with the active stack's artifact store "
            f"({store.name}, flavor {store.flavor}, which reads {', '.join(schemes) or 'no URLs'})"
            "; put the data where it can read it (an s3:// URL for an S3 artifact store, gs:// "
            "for GCS) or pass a local path"
        )
    with tempfile.TemporaryDirectory(prefix="walsrec-source-") as folder:
        target = os.path.join(folder, posixpath.basename(source.rstrip("/")))
        try:
            found = filesystem.exists(source)
            if found:
                # The artifact store's own filesystem and credentials (the ZenML secret the
                # stack names); its file I/O would refuse a path outside the store's folder.
                filesystem.get(source, target, recursive=filesystem.isdir(source))
        except Exception as exc:  # the filesystem's own error names no option
            raise DataError(
                f"data source {source}: can't be read with the artifact store {store.name} "
                f"({type(exc).__name__}: {exc})"
            ) from exc
        if not found:
            raise DataError(f"data source {source}: no such file or folder")
        yield target
