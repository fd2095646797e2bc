"""Execute a compiled Kubeflow (KFP v2) pipeline spec the way a cluster would, minus containers.

What a Kubeflow cluster does with the YAML ZenML's orchestrator compiles, done here with local
processes:

- one process per task, started only when every task it depends on has succeeded (DAG order);
- the task's own container command and arguments, with the KFP runtime placeholders the backend
  substitutes (`{{$.pipeline_job_name}}`, ...) replaced, and any other placeholder refused;
- the environment a pod of that image gets and nothing else: the variables of the Dockerfile
  ZenML would build for the step (`ENV` lines from ZenML's own Dockerfile generator), plus the
  task's `env:` from the spec; no variable of the test process leaks in;
- a fresh copy of the image's working directory per task (the files ZenML's build context puts in
  the image, `configs/kubeflow/dockerignore` applied), so no task sees another's local files: what
  goes from one step to the next goes through the artifact store and the ZenML server.

Services the tasks talk to (started by the tests, see `ZenMLServer` and `S3Server`): a real ZenML
server from the pinned `zenml[server]` (uvicorn, its own SQLite database, OAuth2 login like a
deployed server, so the tasks authenticate with the run-scoped workload token ZenML puts in the
spec) and an S3-compatible server (moto) for the artifact store.

What is not reproduced: the image build and push, the container runtime (the tasks use this
machine's Python environment, which holds the same pins as the image, and /tmp is the machine's)
and Kubernetes scheduling (resources are checked in the spec by test_compile.py, not enforced).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from serving.cli import stop_server, wait_until_ready
from stacks.compile import TaskSpec, read_compiled_spec
from tests.serving.conftest import free_port

PYTHON_BIN = Path(sys.executable).parent
# What the parent image (python:3.11-slim) sets besides PATH and its version variables; PATH
# starts at this machine's Python environment, the stand-in for the image's Python, so the
# spec's `python` is that one.
BASE_IMAGE_ENVIRONMENT = {"LANG": "C.UTF-8"}
# Placeholders the KFP backend substitutes at run time; a task using another one can't run here.
_PLACEHOLDER = re.compile(r"\{\{\$[^}]*\}\}")


def _quiet_environment(home: Path) -> dict[str, str]:
    return {
        "PATH": f"{PYTHON_BIN}:/usr/local/bin:/usr/bin:/bin",
        "HOME": str(home),
        "ZENML_ANALYTICS_OPT_IN": "false",
        "BENTOML_DO_NOT_TRACK": "true",
    }


@dataclass
class Service:
    """A server process on 127.0.0.1 started by a test."""

    name: str
    port: int
    process: subprocess.Popen
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")


def start_service(
    name: str, command: list[str], env: dict[str, str], ready_path: str, folder: Path
) -> Service:
    """Start `command` (which must listen on the port it was given) and wait until it answers.

    Raises:
        RuntimeError: the server exited or did not answer within two minutes; with its log.
    """
    port = free_port()
    log_path = folder / f"{name}.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [part.format(port=port) for part in command],
            cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    service = Service(name, port, process, log_path)
    try:
        wait_until_ready(service.url + ready_path, process, timeout=120)
    except Exception as exc:
        stop_server(process)
        raise RuntimeError(f"{name} did not start: {exc}\n{service.log()[-3000:]}") from exc
    return service


@contextmanager
def zenml_server(folder: Path, password: str) -> Iterator[Service]:
    """A ZenML server (the pinned zenml[server]'s FastAPI app under uvicorn) with its own SQLite
    database, OAuth2 password login and a default user `default` with `password`."""
    folder.mkdir(parents=True, exist_ok=True)
    env = {
        **_quiet_environment(folder),
        "ZENML_CONFIG_PATH": str(folder / "config"),
        "ZENML_STORE_URL": f"sqlite:///{folder / 'zenml.db'}",
        "ZENML_SERVER_AUTH_SCHEME": "OAUTH2_PASSWORD_BEARER",
        "ZENML_SERVER_AUTO_ACTIVATE": "true",
        "ZENML_SERVER_DEPLOYMENT_TYPE": "other",
        "ZENML_SERVER_JWT_SECRET_KEY": uuid.uuid4().hex,
        "ZENML_DEFAULT_USER_NAME": "default",
        "ZENML_DEFAULT_USER_PASSWORD": password,
    }
    command = [str(PYTHON_BIN / "python"), "-m", "uvicorn", "zenml.zen_server.zen_server_api:app"]
    command += ["--host", "127.0.0.1", "--port", "{port}", "--log-level", "warning"]
    service = start_service("zenml-server", command, env, "/health", folder)
    try:
        yield service
    finally:
        stop_server(service.process, timeout=30)


@contextmanager
def s3_server(folder: Path) -> Iterator[Service]:
    """An S3-compatible server (moto) on a free localhost port."""
    folder.mkdir(parents=True, exist_ok=True)
    command = [str(PYTHON_BIN / "moto_server"), "-H", "127.0.0.1", "-p", "{port}"]
    service = start_service("s3-server", command, _quiet_environment(folder), "/", folder)
    try:
        yield service
    finally:
        stop_server(service.process, timeout=30)


@dataclass
class Image:
    """What a step's image holds that matters to a process: its ENV lines, its files."""

    environment: dict[str, str]
    workdir: str
    build_context_root: str
    dockerignore: str | None

    @classmethod
    def from_dict(cls, data: dict) -> Image:
        return cls(**data)


def dag_order(tasks: dict[str, TaskSpec]) -> list[str]:
    """Step names so that every task comes after the tasks it depends on (ties by name).

    Raises:
        ValueError: a dependency names no task, or the dependencies form a cycle.
    """
    order: list[str] = []
    remaining = dict(tasks)
    while remaining:
        ready = sorted(name for name, task in remaining.items() if task.dependencies <= set(order))
        if not ready:
            unknown = {dep for task in remaining.values() for dep in task.dependencies} - set(tasks)
            raise ValueError(
                f"tasks {sorted(remaining)} can never start: "
                + (f"unknown dependencies {sorted(unknown)}" if unknown else "a cycle")
            )
        order.extend(ready)
        for name in ready:
            del remaining[name]
    return order


def substitute_placeholders(value: str, values: dict[str, str], where: str) -> str:
    """`value` with the KFP runtime placeholders replaced as the backend would.

    Raises:
        ValueError: a placeholder the backend would substitute but this harness can't.
    """
    for placeholder, replacement in values.items():
        value = value.replace(placeholder, replacement)
    left = _PLACEHOLDER.findall(value)
    if left:
        raise ValueError(f"{where}: KFP placeholder {left[0]} has no value outside a cluster")
    return value


@dataclass
class TaskResult:
    step: str
    returncode: int
    seconds: float
    log_path: Path


@dataclass
class PipelineJob:
    """One execution of a compiled spec: a job name like the KFP backend's, the tasks' results."""

    spec_path: Path
    images: dict[str, Image]
    folder: Path
    tasks: dict[str, TaskSpec] = field(init=False)
    job_name: str = field(init=False)
    results: list[TaskResult] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.tasks = read_compiled_spec(self.spec_path)
        pipeline = _spec_document(self.spec_path)["pipelineInfo"]["name"]
        # The backend names a run's job `<pipeline name>-<random suffix>`: one value per run,
        # the same in every task (ZenML's orchestrator run id, KFP_RUN_ID).
        self.job_name = f"{pipeline}-{uuid.uuid4().hex[:5]}"
        self.job_uuid = str(uuid.uuid4())

    def placeholder_values(self, step: str) -> dict[str, str]:
        return {
            "{{$.pipeline_job_name}}": self.job_name,
            "{{$.pipeline_job_resource_name}}": f"projects/local/pipelineJobs/{self.job_name}",
            "{{$.pipeline_job_uuid}}": self.job_uuid,
            "{{$.pipeline_task_name}}": step.replace("_", "-"),
            "{{$.pipeline_task_uuid}}": str(uuid.uuid5(uuid.UUID(self.job_uuid), step)),
            "{{$.pipeline_job_create_time_utc}}": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        }

    def pod(self, step: str) -> tuple[list[str], dict[str, str], Path]:
        """(argv, environment, working directory) of the step's task, as its pod would run it.

        The working directory is a fresh copy of the image's files.
        """
        task, image = self.tasks[step], self.images[step]
        values = self.placeholder_values(step)
        root = self.folder / step
        workdir = root / "image" / image.workdir.lstrip("/")
        home = root / "home"
        _copy_build_context(image, workdir)
        home.mkdir(parents=True)

        def in_image(path: str) -> str:
            # The container's absolute paths under its working directory are this copy's.
            if path == image.workdir or path.startswith(image.workdir + "/"):
                return str(workdir) + path[len(image.workdir) :]
            return path

        environment = {
            **_quiet_environment(home),
            **BASE_IMAGE_ENVIRONMENT,
            **{key: in_image(value) for key, value in image.environment.items()},
        }
        for key, value in task.environment.items():
            environment[key] = substitute_placeholders(value, values, f"{step}: env {key}")
        argv = [
            substitute_placeholders(part, values, f"{step}: command")
            for part in task.command + task.args
        ]
        return argv, environment, workdir

    def run(self, timeout: float = 1800) -> None:
        """Run every task in DAG order; stop at the first that fails, as KFP would not start the
        tasks after it.

        Raises:
            TaskFailed: a task exited non-zero or ran past `timeout` seconds; with its log.
        """
        for step in dag_order(self.tasks):
            argv, environment, workdir = self.pod(step)
            log_path = self.folder / step / "pod.log"
            started = time.perf_counter()
            with log_path.open("wb") as log:
                try:
                    process = subprocess.run(
                        argv, cwd=workdir, env=environment, stdout=log, stderr=subprocess.STDOUT,
                        timeout=timeout, check=False,
                    )  # fmt: skip
                    returncode = process.returncode
                except subprocess.TimeoutExpired:
                    returncode = -9
            result = TaskResult(step, returncode, time.perf_counter() - started, log_path)
            self.results.append(result)
            if returncode != 0:
                raise TaskFailed(result)


class TaskFailed(AssertionError):
    def __init__(self, result: TaskResult) -> None:
        log = result.log_path.read_text(encoding="utf-8", errors="replace")
        super().__init__(
            f"task {result.step} exited with {result.returncode} after {result.seconds:.0f} s; "
            f"its log ({result.log_path}) ends:\n{log[-6000:]}"
        )
        self.result = result


def _spec_document(path: Path) -> dict:
    import yaml

    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _copy_build_context(image: Image, target: Path) -> None:
    """The files ZenML's build context puts in the image, copied under `target`."""
    from zenml.image_builders.build_context import BuildContext

    context = BuildContext(root=image.build_context_root, dockerignore_file=image.dockerignore)
    for archive_path, source in context.get_files().items():
        if os.path.isdir(source):
            continue
        destination = target / archive_path
        destination.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, destination)
