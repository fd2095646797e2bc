"""`python run.py serve`: run the service on the newest packaged model and say where it is."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from serving.guard import read_token
from walsrec.errors import WalsrecError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SERVICE = "serving.service:WalsrecService"


def serve_command(host: str, port: int, target: str = SERVICE) -> list[str]:
    """The `bentoml serve` command line for the working tree's service (or a Bento's tag)."""
    return [sys.executable, "-m", "bentoml", "serve", target, "--host", host, "--port", str(port)]


def wait_until_ready(url: str, process: subprocess.Popen, timeout: float) -> float:
    """Poll `url` (a readiness endpoint) until it answers 200; seconds it took.

    Raises:
        WalsrecError: the server exited, answered that it will never be ready (503), or was not
            ready within `timeout` seconds.
    """
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        if process.poll() is not None:
            raise WalsrecError(
                f"the server exited with code {process.returncode} before it was ready"
            )
        try:
            with urllib.request.urlopen(url, timeout=1) as response:
                if response.status == 200:
                    return time.perf_counter() - started
        except urllib.error.HTTPError as exc:
            if exc.code == 503:  # the service's own "never ready": its model failed validation
                raise WalsrecError(
                    "the server is up but will not become ready: its model failed validation "
                    "(the server's log line 'not serving model ...' names the file)"
                ) from None
        except OSError:
            pass
        time.sleep(0.05)
    raise WalsrecError(f"the server did not become ready at {url} within {timeout:.0f} s")


def stop_server(process: subprocess.Popen, timeout: float = 20) -> None:
    """Stop a server like Ctrl-C (SIGINT), then SIGKILL after `timeout` seconds.

    A server started in its own session (`start_new_session=True`) is signalled as a process
    group, so its workers stop with it.
    """
    if process.poll() is not None:
        return

    def send(signum: int) -> None:
        try:
            if os.getpgid(process.pid) == process.pid:
                os.killpg(process.pid, signum)
            else:
                process.send_signal(signum)
        except ProcessLookupError:  # exited meanwhile
            pass

    send(signal.SIGINT)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        send(signal.SIGKILL)
        process.wait()


def _latest_model_tag(name: str = "walsrec") -> str:
    """The newest `name` in the local BentoML model store, read from the store's `latest` file.

    Read directly rather than through `bentoml.models.get`: importing BentoML here would add
    about a second to `python run.py serve`'s start, and the server resolves the tag again.
    """
    home = Path(os.environ.get("BENTOML_HOME", Path.home() / "bentoml")).expanduser()
    latest = home / "models" / name / "latest"
    if not latest.is_file():
        raise WalsrecError(
            f"no BentoML model {name!r} in the model store {home / 'models'}: package one "
            "first (python run.py deploy)"
        )
    return f"{name}:{latest.read_text(encoding='utf-8').strip()}"


def _check_port_free(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as sock:
        # As the server itself binds: a stopped server's TIME_WAIT connections don't hold the
        # port (without it a restart was refused for about a minute), a live listener does.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise WalsrecError(
                f"cannot listen on {host}:{port} ({exc.strerror}): choose another --port"
            ) from exc


def serve(
    host: str = "127.0.0.1",
    port: int = 3000,
    model_tag: str | None = None,
    workers: int | None = None,
    echo: Callable[[str], None] = print,
    ready_timeout: float = 120,
    bento_tag: str | None = None,
) -> int:
    """Serve `model_tag` (default: the newest `walsrec` BentoML model) until interrupted; with
    `bento_tag`, that Bento (its own code and the model pinned in it).

    Returns:
        The server's exit code (0 after Ctrl-C).
    """
    try:
        read_token(os.environ)  # the server would refuse it too, after seconds of start-up
    except ValueError as exc:
        raise WalsrecError(str(exc)) from None
    tag = model_tag or (bento_tag if bento_tag else _latest_model_tag())
    _check_port_free(host, port)
    env = dict(os.environ)
    if not bento_tag:
        env["WALSREC_MODEL_TAG"] = tag
    if workers:
        env["WALSREC_WORKERS"] = str(workers)
    started = time.perf_counter()
    # `kill` (SIGTERM) stops the server too, like Ctrl-C.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    target = bento_tag or SERVICE
    process = subprocess.Popen(serve_command(host, port, target), cwd=PROJECT_ROOT, env=env)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    try:
        wait_until_ready(f"{url}/readyz", process, ready_timeout)
        echo(
            f"walsrec {'Bento' if bento_tag else 'model'} {tag} serving at {url} "
            f"(ready in {time.perf_counter() - started:.1f} s;"
            f" API docs at {url}/ ; Ctrl-C stops)"
        )
        if os.environ.get("WALSREC_API_TOKEN"):
            echo("requests need the header 'Authorization: Bearer $WALSREC_API_TOKEN'")
        return process.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        stop_server(process)
