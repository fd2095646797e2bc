"""Open the ZenML store once per process, creating and migrating a fresh one in one process at
a time.

Two first runs on a fresh local store used to race: both found an empty SQLite database, both
began creating tables, and the second failed with "The ZenML database has never been migrated
with alembic before". The lock file sits in ZenML's config folder, beside the local store, so
it orders the processes of this machine, the only ones that open a local SQLite store. A ZenML
server migrates its own database at its start; for clients of a server the lock costs nothing.
"""

from __future__ import annotations

from pathlib import Path

from walsrec.locks import file_lock

_opened = False


def init_store_lock_path() -> Path:
    from zenml.utils.io_utils import get_global_config_directory

    return Path(get_global_config_directory()) / "walsrec-store-init.lock"


def open_store() -> None:
    """Open (and on first use create and migrate) the configured ZenML store, one process of
    this machine at a time."""
    global _opened
    if _opened:
        return
    from zenml.config.global_config import GlobalConfiguration

    with file_lock(init_store_lock_path(), purpose="opening the ZenML store"):
        GlobalConfiguration().zen_store  # noqa: B018  (opening it creates and migrates it)
    _opened = True
