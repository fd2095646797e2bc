"""Keep-alive connections spread evenly over the server's worker processes.

BentoML's workers all accept from one listening socket, and the worker that wakes first takes
every connection waiting in the queue. A client that opens its connections at once (a reverse
proxy's keep-alive pool, a load generator) therefore often lands them all on one worker: with
2 workers and wrk's 32 connections the split was 32/0, 31/1, 30/2 or 26/6 in most tries, and
with all 32 on one worker the server answered 4,614 req/s against 7,000-7,500 with them split
(bench/serve/README.md). Stock uvicorn with `--workers` does the same.

`install()` makes the server each BentoML worker runs a `BalancedServer`: it accepts from the
shared socket itself, one connection per readiness event, and a worker that holds more open
connections than the least loaded of the other live workers lets the connection wait (up to
DEFER_SECONDS x MAX_DEFERRALS, 3 ms) for that worker to take it, then takes it anyway. The open
connection counts live in a small shared file (`Board`), one slot per worker process, claimed
under a file lock and freed when the worker stops or found dead. Everything after the accept is
uvicorn's own (the same protocol class, server state and graceful shutdown).

`WALSREC_BALANCE=0` keeps uvicorn's own accept loop.
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import mmap
import os
import socket
import struct
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

__all__ = ["BalancedServer", "Board", "install"]

logger = logging.getLogger(__name__)

SLOTS = 64  # worker processes one board holds; a worker that finds none free is not balanced
_SLOT = struct.Struct("=ii")  # pid, open connections
DEFER_SECONDS = 0.001
MAX_DEFERRALS = 3
# Back-off when accept() fails for lack of file descriptors or memory, as asyncio does.
ACCEPT_RETRY_SECONDS = 1.0


class Board:
    """Each worker's open connections, in a file shared by the workers of one listening socket.

    Args:
        path: the board's file (made if missing); every worker of a server opens the same one.
        pid: this worker's process id.
    """

    def __init__(self, path: Path, pid: int | None = None) -> None:
        self.pid = os.getpid() if pid is None else pid
        self.path = path
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                if os.fstat(fd).st_size < SLOTS * _SLOT.size:
                    os.ftruncate(fd, SLOTS * _SLOT.size)
                self._map = mmap.mmap(fd, SLOTS * _SLOT.size)
                self.slot = self._claim()
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def _claim(self) -> int | None:
        for slot in range(SLOTS):
            pid, _ = _SLOT.unpack_from(self._map, slot * _SLOT.size)
            if pid in (0, self.pid) or not _alive(pid):
                _SLOT.pack_into(self._map, slot * _SLOT.size, self.pid, 0)
                return slot
        return None

    def publish(self, connections: int) -> None:
        if self.slot is not None:
            _SLOT.pack_into(self._map, self.slot * _SLOT.size, self.pid, connections)

    def fewest_elsewhere(self) -> int | None:
        """The open connections of the least loaded other live worker (None: there is none)."""
        fewest = None
        for slot in range(SLOTS):
            if slot == self.slot:
                continue
            pid, connections = _SLOT.unpack_from(self._map, slot * _SLOT.size)
            if pid and (fewest is None or connections < fewest) and _alive(pid):
                fewest = connections
        return fewest

    def release(self) -> None:
        """Free this worker's slot; the last worker out removes the file."""
        if self.slot is None:
            return
        _SLOT.pack_into(self._map, self.slot * _SLOT.size, 0, 0)
        self.slot = None
        try:
            with self.path.open("rb") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)  # no worker is claiming a slot meanwhile
                if self.fewest_elsewhere() is None:
                    self.path.unlink()
        except FileNotFoundError:
            pass  # another worker removed it


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class _CountingSet(set):
    """uvicorn's set of open connections, publishing its size to the board on every change,
    with the connections accepted but not yet handed to their protocol (`pending`)."""

    def __init__(self, board: Board) -> None:
        super().__init__()
        self.board = board
        self.pending = 0

    def load(self) -> int:
        return len(self) + self.pending

    def publish(self) -> None:
        self.board.publish(len(self) + self.pending)

    def add(self, item: Any) -> None:
        super().add(item)
        self.publish()

    def discard(self, item: Any) -> None:
        super().discard(item)
        self.publish()


class BalancedListener:
    """Accepts from a shared listening socket, deferring to less loaded workers.

    It stands in uvicorn's `Server.servers` list, whose `close()` it implements: stop accepting.
    """

    def __init__(
        self,
        sock: socket.socket,
        protocol_factory: Callable[[], asyncio.Protocol],
        loop: asyncio.AbstractEventLoop,
        connections: _CountingSet,
        board: Board,
        ssl: Any = None,
    ) -> None:
        self.sock = sock
        self.protocol_factory = protocol_factory
        self.loop = loop
        self.connections = connections
        self.board = board
        self.ssl = ssl
        self.deferrals = 0
        self.closed = False
        self.waiting = False
        self.connecting: set[asyncio.Task] = set()  # referenced until the protocol has it
        sock.setblocking(False)
        self.fd = sock.fileno()
        loop.add_reader(self.fd, self._readable)

    def _readable(self) -> None:
        fewest = self.board.fewest_elsewhere()
        busier = fewest is not None and self.connections.load() > fewest
        if busier and self.deferrals < MAX_DEFERRALS:
            # Let a less loaded worker take it; look again shortly (a busy worker may be slow).
            self.deferrals += 1
            self._pause(DEFER_SECONDS)
            return
        self.deferrals = 0
        try:
            conn, _ = self.sock.accept()
        except (BlockingIOError, InterruptedError, ConnectionAbortedError):
            return  # another worker took it, or the client gave up
        except OSError as exc:
            # Out of file descriptors or memory (or anything else): back off instead of
            # spinning on a socket that stays readable.
            logger.error("accept() failed (%s): retrying in %g s", exc, ACCEPT_RETRY_SECONDS)
            self._pause(ACCEPT_RETRY_SECONDS)
            return
        conn.setblocking(False)
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        # Counted from now: the protocol joins uvicorn's set a loop iteration or two later.
        self.connections.pending += 1
        self.connections.publish()
        task = self.loop.create_task(self._connect(conn))
        self.connecting.add(task)
        task.add_done_callback(self.connecting.discard)

    async def _connect(self, conn: socket.socket) -> None:
        try:
            await self.loop.connect_accepted_socket(self.protocol_factory, conn, ssl=self.ssl)
        except OSError:
            conn.close()  # the client went away during the TLS handshake or before
        except Exception:
            conn.close()
            logger.exception("could not set up an accepted connection")
        finally:
            self.connections.pending -= 1
            self.connections.publish()

    def _pause(self, seconds: float) -> None:
        self.loop.remove_reader(self.fd)
        self.waiting = True
        self.loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        self.waiting = False
        if not self.closed:
            self.loop.add_reader(self.fd, self._readable)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if not self.waiting:
                self.loop.remove_reader(self.fd)
            self.board.release()

    async def wait_closed(self) -> None:
        return None


def board_path(sock: socket.socket) -> Path:
    """One board per listening socket: its inode is the same in every worker that shares it."""
    return Path(tempfile.gettempdir(), f"walsrec-accept-{os.fstat(sock.fileno()).st_ino}")


class BalancedServer(uvicorn.Server):
    """uvicorn's server; given open sockets (a worker of a multi-process server), it accepts
    from them with `BalancedListener`s instead of uvicorn's accept loop."""

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        if not sockets or any(s.family not in (socket.AF_INET, socket.AF_INET6) for s in sockets):
            await super().startup(sockets=sockets)
            return
        await super().startup(sockets=[])  # the lifespan (the model loads) and state, no listener
        loop = asyncio.get_running_loop()
        config = self.config
        # Claimed once this worker can answer, so no worker waits for one still loading.
        board = Board(board_path(sockets[0]))
        if board.slot is None:
            logger.warning("more than %d workers share the socket: accepting unbalanced", SLOTS)
            self.servers = [
                await loop.create_server(self._protocol, sock=sock, ssl=config.ssl)
                for sock in sockets
            ]
            return
        self.server_state.connections = _CountingSet(board)
        self.servers = [
            BalancedListener(sock, self._protocol, loop, self.server_state.connections, board,
                             ssl=config.ssl)
            for sock in sockets
        ]  # fmt: skip

    def _protocol(self) -> asyncio.Protocol:
        """A connection's protocol, as uvicorn's own startup makes it."""
        return self.config.http_protocol_class(  # type: ignore[call-arg]
            config=self.config,
            server_state=self.server_state,
            app_state=self.lifespan.state,
            _loop=asyncio.get_running_loop(),
        )


def install(environ: dict[str, str] | None = None) -> None:
    """Make `uvicorn.Server` (the class BentoML's worker runs) the balanced one, unless
    WALSREC_BALANCE=0."""
    environ = os.environ if environ is None else environ
    if environ.get("WALSREC_BALANCE", "1").strip().lower() in ("0", "false", "no"):
        return
    uvicorn.Server = BalancedServer
