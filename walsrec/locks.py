"""File locks between processes of one machine (fcntl.flock), with the holder written inside.

The kernel releases an flock when its process dies, SIGKILL included, so a lock file never
outlives its holder: a lock that can be taken means nobody holds it. Locks on a network file
system (NFS) are not reliable across machines; locks here guard one machine's state (a SQLite
file, the local ZenML store, a run's liveness).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from walsrec.errors import WalsrecError


class LockHeld(WalsrecError):
    """The lock is held by another process; `holder` is what that process wrote into it."""

    def __init__(self, message: str, holder: dict) -> None:
        super().__init__(message)
        self.holder = holder


def describe_holder(holder: dict) -> str:
    """'pid 123 on host-a since 2026-12-02 04:50:01 UTC (run.py tune)'."""
    if not holder:
        return "another process"
    since = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(holder.get("since", 0)))
    purpose = f" ({holder['purpose']})" if holder.get("purpose") else ""
    return f"pid {holder.get('pid')} on {holder.get('host')} since {since}{purpose}"


def read_holder(path: Path) -> dict:
    """What the holder of `path` wrote (empty when unreadable)."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8") or "{}")
    except (OSError, ValueError):
        return {}


@contextlib.contextmanager
def file_lock(
    path: str | Path, *, timeout: float | None = None, purpose: str = ""
) -> Iterator[None]:
    """Hold an exclusive lock on `path` (created with its folder) for the `with` block.

    Args:
        path: the lock file.
        timeout: seconds to wait for it; None waits for ever, 0 does not wait.
        purpose: a word for the holder record, shown to whoever finds the lock taken.

    Raises:
        LockHeld: not taken within `timeout`; the message names the holder.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115  (held for the block)
    try:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (fcntl.LOCK_NB if timeout is not None else 0))
                break
            except BlockingIOError:
                if deadline is not None and time.monotonic() >= deadline:
                    holder = read_holder(path)
                    raise LockHeld(
                        f"{path} is locked by {describe_holder(holder)}", holder
                    ) from None
                time.sleep(0.1)
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
        handle.seek(0)
        handle.truncate()
        handle.write(json.dumps({**record, "purpose": purpose}))
        handle.flush()
        try:
            yield
        finally:
            handle.seek(0)
            handle.truncate()
            handle.flush()
            fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        handle.close()


def is_locked(path: str | Path) -> bool:
    """Whether some live process holds the lock on `path` (False when the file is absent)."""
    path = Path(path)
    if not path.exists():
        return False
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(handle, fcntl.LOCK_UN)
        return False
