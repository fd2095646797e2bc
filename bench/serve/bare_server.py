"""The bare app (bare_app.py) on N worker processes that share one listening socket, as BentoML's
workers do, each accepting through `serving.balance` (the service's connection balancing).

    WALSREC_MODEL_DIR=/path/to/model PYTHONPATH=. \
        python bench/serve/bare_server.py --port 3001 --workers 2

Against this baseline the benchmark's ratio is the framework's cost per request alone: both
servers spread wrk's connections evenly. Stock `uvicorn --workers` (the other baseline) lets
whichever worker wakes first take every waiting connection (serving/balance.py).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import sys
from pathlib import Path


def serve(sock: socket.socket) -> None:
    import uvicorn

    from serving.balance import BalancedServer

    sys.path.insert(0, str(Path(__file__).parent))
    config = uvicorn.Config(
        "bare_app:app",
        log_level="warning",
        access_log=False,
        server_header=False,
    )
    BalancedServer(config).run(sockets=[sock])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(2048)
    children = []
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            serve(sock)
            os._exit(0)
        children.append(pid)

    def stop(signum, frame) -> None:
        for child in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(child, signal.SIGINT)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    for child in children:
        while True:
            try:
                os.waitpid(child, 0)
                break
            except ChildProcessError:
                break
            except InterruptedError:
                continue
    sys.exit(0)


if __name__ == "__main__":
    main()
