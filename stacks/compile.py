"""Compile a pipeline to the Kubeflow (KFP v2) pipeline spec without a cluster, and check it.

ZenML's Kubeflow orchestrator compiles a run with `kfp.compiler` into a YAML file under
$ZENML_CONFIG_PATH/kubeflow/<orchestrator-id>/pipelines/ and then uploads it to Kubeflow
Pipelines. Here the real orchestrator compiles; only the two things that need the outside world
are skipped: the stack checks (a Kubernetes context in the kubeconfig, no local components, a
remote ZenML server) and the upload. Images are not built (no Docker engine needed): each Docker
settings block gets `skip_build` and the image name ZenML's build would push.

The spec is read back with kfp and compared with what the ZenML snapshot and the config ask for:
one task per step, the same dependencies, image, resources and environment.
"""

from __future__ import annotations

import contextlib
import copy
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from unittest import mock

import yaml

from stacks.kubeflow_orchestrator import (
    DEFAULT_GPU_RESOURCE,
    FLAVOR_NAME,
    _cpu_quantity,
    kubernetes_memory,
)

COMPILE_STACK = "walsrec-kubeflow-compile"
PLACEHOLDER_REGISTRY = "registry.invalid/walsrec"
PLACEHOLDER_CONTEXT = "compile-only"


@dataclass
class TaskSpec:
    """What one step's task in a compiled spec (or the expectation for it) holds."""

    step: str
    image: str
    dependencies: set[str]
    cpu_limit: str | None = None
    memory_limit: str | None = None
    accelerator_type: str | None = None
    accelerator_count: int = 0
    environment: dict[str, str] = field(default_factory=dict)
    # What the container runs (its entrypoint and arguments, KFP placeholders unresolved).
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)


@dataclass
class CompiledPipeline:
    """A compiled pipeline: the YAML file, its tasks by step name, and ZenML's snapshot.

    `run` is the run ZenML registered for it (its placeholder run, which the tasks fill in when
    they execute), or None when the compile was only a compile and the run was deleted.
    """

    pipeline_name: str
    path: Path
    tasks: dict[str, TaskSpec]
    snapshot: Any
    run: Any = None


def image_for(repository: str, pipeline_name: str, step: str | None = None) -> str:
    """The image name ZenML's build pushes: <registry>/zenml:<pipeline>[-<step>]-orchestrator.

    Args:
        repository: the container registry URI plus the target repository.
        pipeline_name: the ZenML pipeline name.
        step: a step with its own Docker settings (its own image), else None.

    Returns:
        The image reference.
    """
    tag = pipeline_name + (f"-{step}" if step else "") + "-orchestrator"
    return f"{repository}:{tag}"


def pin_images(config: dict, repository: str, pipeline_name: str) -> dict:
    """The config with every Docker settings block set to use a named image without building.

    Args:
        config: a run config (with the stack overlay applied).
        repository: where the images would be, e.g. "ghcr.io/org/zenml".
        pipeline_name: the ZenML pipeline name.

    Returns:
        A new config.
    """
    config = copy.deepcopy(config)
    settings = config.setdefault("settings", {})
    docker = settings.setdefault("docker", {})
    docker.update(parent_image=image_for(repository, pipeline_name), skip_build=True)
    for step_name, step in (config.get("steps") or {}).items():
        step_docker = ((step or {}).get("settings") or {}).get("docker")
        if isinstance(step_docker, dict):
            step_docker.update(
                parent_image=image_for(repository, pipeline_name, step_name), skip_build=True
            )
    return config


def run_with_config(pipeline_obj: Any, config: dict) -> Any:
    """Run a ZenML pipeline with a run config given as a dict."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as handle:
        yaml.safe_dump(config, handle, sort_keys=False)
        config_path = handle.name
    try:
        return pipeline_obj.with_options(config_path=config_path)()
    finally:
        os.unlink(config_path)


@contextlib.contextmanager
def active_stack(name: str) -> Iterator[None]:
    """Activate a ZenML stack for the duration of the block, then restore the previous one."""
    from zenml.client import Client

    client = Client()
    previous = client.active_stack_model.id
    client.activate_stack(name)
    try:
        yield
    finally:
        client.activate_stack(previous)


def ensure_compile_stack(
    kube_context: str = PLACEHOLDER_CONTEXT, registry_uri: str = PLACEHOLDER_REGISTRY
) -> str:
    """Register (once) the stack used to compile without a cluster; returns its name.

    It has the project's Kubeflow orchestrator, ZenML's local artifact store (the spec doesn't
    depend on where artifacts go), a container registry entry and a local image builder.

    Args:
        kube_context: written into the orchestrator's configuration; never contacted.
        registry_uri: the registry the spec's images point at.
    """
    from zenml.client import Client
    from zenml.enums import StackComponentType as Type

    from stacks.register import ComponentSpec, ensure_custom_flavors, find_stack

    client = Client()
    if find_stack(COMPILE_STACK) is not None:
        return COMPILE_STACK
    orchestrator = ComponentSpec(
        "orchestrator", COMPILE_STACK, FLAVOR_NAME, {"kubernetes_context": kube_context}
    )
    ensure_custom_flavors([orchestrator])
    components = {
        Type.ORCHESTRATOR: (FLAVOR_NAME, orchestrator.configuration),
        Type.CONTAINER_REGISTRY: ("default", {"uri": registry_uri}),
        Type.IMAGE_BUILDER: ("local", {}),
    }
    for component_type, (flavor, configuration) in components.items():
        client.create_stack_component(COMPILE_STACK, flavor, component_type, configuration)
    client.create_stack(
        COMPILE_STACK,
        components={
            **{component_type: COMPILE_STACK for component_type in components},
            Type.ARTIFACT_STORE: "default",
        },
    )
    return COMPILE_STACK


@contextlib.contextmanager
def compile_only() -> Iterator[list[Any]]:
    """Let ZenML's Kubeflow orchestrator compile but neither check the cluster nor upload.

    Yields:
        A list that receives one `(snapshot, pipeline_file_path)` per compiled run.
    """
    from zenml.integrations.kubeflow.orchestrators import KubeflowOrchestrator
    from zenml.stack import Stack

    compiled: list[Any] = []

    def capture(self: Any, snapshot: Any, pipeline_file_path: str, run_name: str) -> None:
        compiled.append((snapshot, pipeline_file_path))
        return None

    # What needs a cluster and a ZenML server: the stack checks (a Kubernetes context in the
    # kubeconfig, no local components, a remote ZenML server) and the upload. Everything else is
    # ZenML's own path.
    with (
        mock.patch.object(Stack, "validate", lambda self, *args, **kwargs: None),
        mock.patch.object(Stack, "prepare_pipeline_submission", lambda self, snapshot: None),
        mock.patch.object(KubeflowOrchestrator, "_upload_and_run_pipeline", capture),
    ):
        yield compiled


def _forget_run(run: Any) -> None:
    """Delete the placeholder run (and model version) a compile-only run leaves in the store."""
    from zenml.client import Client

    if run is None:
        return
    client = Client()
    run = client.get_pipeline_run(run.id)
    model_version = run.model_version
    client.delete_pipeline_run(run.id)
    if model_version is not None and model_version.created >= run.created:
        client.delete_model_version(model_version.id)


def compile_pipeline(
    pipeline_obj: Any,
    config: dict,
    repository: str,
    stack: str | None = None,
    keep_run: bool = False,
) -> CompiledPipeline:
    """Compile a pipeline with a run config into the KFP v2 spec, without a cluster or Docker.

    Args:
        pipeline_obj: a ZenML pipeline (e.g. `pipelines.training_pipeline`).
        config: its run config with the Kubeflow overlay applied.
        repository: where the step images are (see `image_for`).
        stack: the ZenML stack to compile on (default: the compile-only stack).
        keep_run: keep the run ZenML registered (to execute the spec's tasks afterwards, as a
            Kubeflow cluster would); by default it is deleted with its model version.

    Returns:
        The compiled pipeline.
    """
    stack = stack or ensure_compile_stack()
    config = pin_images(config, repository, pipeline_obj.name)
    with active_stack(stack), compile_only() as compiled:
        run = run_with_config(pipeline_obj, config)
    if not keep_run:
        _forget_run(run)
    snapshot, path = compiled[-1]
    return CompiledPipeline(
        pipeline_obj.name,
        Path(path),
        read_compiled_spec(path),
        snapshot,
        run=run if keep_run else None,
    )


def read_compiled_spec(path: str | Path) -> dict[str, TaskSpec]:
    """Load a compiled KFP v2 pipeline spec with kfp and describe each task.

    Args:
        path: the YAML the orchestrator wrote.

    Returns:
        Task descriptions keyed by ZenML step name (the task's display name).
    """
    from google.protobuf import json_format
    from kfp.components import load_component_from_file

    spec = load_component_from_file(str(path)).pipeline_spec
    executors = json_format.MessageToDict(spec.deployment_spec)["executors"]
    dag_tasks = spec.root.dag.tasks
    step_by_task = {name: task.task_info.name for name, task in dag_tasks.items()}
    tasks = {}
    for task_name, task in dag_tasks.items():
        component = spec.components[task.component_ref.name]
        container = executors[component.executor_label]["container"]
        resources = container.get("resources", {})
        accelerator = resources.get("accelerator", {})
        tasks[step_by_task[task_name]] = TaskSpec(
            step=step_by_task[task_name],
            image=container["image"],
            dependencies={step_by_task[name] for name in task.dependent_tasks},
            cpu_limit=resources.get("resourceCpuLimit"),
            memory_limit=resources.get("resourceMemoryLimit"),
            accelerator_type=accelerator.get("resourceType") or accelerator.get("type"),
            accelerator_count=int(accelerator.get("resourceCount") or 0),
            environment={item["name"]: item["value"] for item in container.get("env", [])},
            command=list(container.get("command", [])),
            args=list(container.get("args", [])),
        )
    return tasks


def _step_settings(config: dict, step: str, key: str) -> dict:
    merged = dict((config.get("settings") or {}).get(key) or {})
    step_config = (config.get("steps") or {}).get(step) or {}
    merged.update((step_config.get("settings") or {}).get(key) or {})
    return merged


def expected_tasks(snapshot: Any, config: dict, repository: str) -> dict[str, TaskSpec]:
    """What each step's task must hold, from ZenML's DAG and the run config.

    Args:
        snapshot: the ZenML snapshot of the run (its steps and their upstream steps).
        config: the run config the pipeline was compiled with (overlay applied).
        repository: where the step images are.

    Returns:
        Expected task descriptions keyed by step name.
    """
    pipeline_name = snapshot.pipeline_configuration.name
    expected = {}
    for step, step_config in snapshot.step_configurations.items():
        step_overrides = (config.get("steps") or {}).get(step) or {}
        resources = _step_settings(config, step, "resources")
        own_docker = "docker" in (step_overrides.get("settings") or {})
        environment = {
            **(config.get("environment") or {}),
            **(step_overrides.get("environment") or {}),
        }
        cpu, memory = resources.get("cpu_count"), resources.get("memory")
        gpus = int(resources.get("gpu_count") or 0)
        expected[step] = TaskSpec(
            step=step,
            image=image_for(repository, pipeline_name, step if own_docker else None),
            dependencies=set(step_config.spec.upstream_steps),
            cpu_limit=_cpu_quantity(cpu) if cpu else None,
            memory_limit=kubernetes_memory(memory) if memory else None,
            accelerator_type=DEFAULT_GPU_RESOURCE if gpus else None,
            accelerator_count=gpus,
            environment={str(key): str(value) for key, value in environment.items()},
        )
    return expected


def _shown(value: Any) -> str:
    return repr(sorted(value)) if isinstance(value, set) else repr(value)


def compare_tasks(compiled: dict[str, TaskSpec], expected: dict[str, TaskSpec]) -> list[str]:
    """Differences between a compiled spec and the expectation, one readable line each.

    Args:
        compiled: from `read_compiled_spec`.
        expected: from `expected_tasks`.

    Returns:
        Empty when every step has exactly one task matching its expectation.
    """
    problems = []
    for step in sorted(set(expected) - set(compiled)):
        problems.append(f"step {step}: no task in the compiled spec")
    for step in sorted(set(compiled) - set(expected)):
        problems.append(f"task {step}: not a step of the pipeline")
    for step in sorted(set(compiled) & set(expected)):
        got, want = compiled[step], expected[step]
        for name in (
            "image",
            "dependencies",
            "cpu_limit",
            "memory_limit",
            "accelerator_type",
            "accelerator_count",
        ):
            if getattr(got, name) != getattr(want, name):
                problems.append(
                    f"step {step}: {name} is {_shown(getattr(got, name))}, "
                    f"expected {_shown(getattr(want, name))}"
                )
        for key, value in want.environment.items():
            if got.environment.get(key) != value:
                problems.append(
                    f"step {step}: environment {key} is {got.environment.get(key)!r}, "
                    f"expected {value!r}"
                )
    return problems
