"""`--stack NAME`: run a pipeline on a stack from its recipe, with the stack's config overlay.

On a remote stack that can't run here (not registered, no Kubernetes context, no ZenML server,
missing secrets or packages), the pipeline is still compiled to the Kubeflow spec through the
real orchestrator, and the error says where the spec is and what the cluster run needs.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator
from typing import Any

from stacks.overlay import apply_stack_overlay
from stacks.register import (
    StackRecipe,
    find_secret,
    find_stack,
    load_recipe,
    missing_secrets,
    register_stack,
)
from walsrec.errors import WalsrecError


class ClusterNeeded(WalsrecError):
    """The pipeline was compiled for a remote stack but can't be submitted from here."""


def _registered_stack(name: str) -> Any:
    stack = find_stack(name)
    if stack is None:
        return None
    from zenml.client import Client

    return Client().get_stack(stack.id)  # hydrated: with its components' configuration


def _component_config(stack: Any, component_type: str) -> tuple[str, dict]:
    components = stack.components.get(component_type) or []
    if not components:
        return "", {}
    return components[0].flavor_name, dict(components[0].configuration)


def _kube_contexts() -> list[str]:
    from kubernetes import config as kube_config

    try:
        contexts, _active = kube_config.list_kube_config_contexts()
    except (kube_config.config_exception.ConfigException, FileNotFoundError, TypeError):
        return []
    return [context["name"] for context in contexts]


def remote_problems(recipe: StackRecipe, config: dict) -> list[str]:
    """Why a pipeline can't be submitted to a remote stack from this machine (empty: it can).

    Args:
        recipe: the stack's recipe.
        config: the pipeline config with the stack's overlay applied.

    Returns:
        One actionable sentence per problem.
    """
    from zenml.client import Client
    from zenml.enums import StackComponentType

    problems = []
    stack = _registered_stack(recipe.stack_name)
    if stack is None:
        values = " ".join(
            f"{recipe.option(name)} ..."
            for name, spec in recipe.values.items()
            if spec.get("required")
        )
        problems.append(
            f"stack {recipe.stack_name} is not registered: "
            f"`python run.py stack register {recipe.key} {values}`"
        )
    else:
        _flavor, orchestrator = _component_config(stack, StackComponentType.ORCHESTRATOR)
        context = orchestrator.get("kubernetes_context")
        if context and context not in _kube_contexts():
            problems.append(
                f"Kubernetes context {context!r} is not in this machine's kubeconfig "
                "(`kubectl config get-contexts`): no cluster to submit to"
            )
        store_flavor, _store = _component_config(stack, StackComponentType.ARTIFACT_STORE)
        if store_flavor == "s3" and importlib.util.find_spec("s3fs") is None:
            problems.append(
                "the S3 artifact store needs s3fs here too: "
                "`pip install -r configs/kubeflow/requirements-remote.txt`"
            )
    if Client().zen_store.is_local_store():
        problems.append(
            "ZenML uses a local store; pods in the cluster report to a ZenML server: "
            "`zenml login <server-url>`"
        )
    secrets = {name: [] for name in config.get("secrets") or []}
    if stack is not None:
        secrets.update(_artifact_store_secrets(recipe, stack))
    for name in missing_secrets(secrets):
        problems.append(f"ZenML secret {name} does not exist: `zenml secret create {name} ...`")
    return problems


def _artifact_store_secrets(recipe: StackRecipe, stack: Any) -> dict[str, list[str]]:
    from zenml.enums import StackComponentType

    flavor, _configuration = _component_config(stack, StackComponentType.ARTIFACT_STORE)
    store = recipe.components.get("artifact_store") or {}
    for choice in (store.get("by_scheme") or {}).values():
        if choice.get("flavor") == flavor:
            return dict(choice.get("secrets") or {})
    return {}


def compile_without_cluster(recipe: StackRecipe, pipeline_obj: Any, config: dict) -> Any:
    """Compile on the compile-only stack, with the registered stack's context and registry.

    Args:
        recipe: the remote stack's recipe.
        pipeline_obj: the ZenML pipeline.
        config: its config with the overlay applied.

    Returns:
        The `CompiledPipeline`.
    """
    from zenml.enums import StackComponentType

    from stacks.compile import (
        PLACEHOLDER_CONTEXT,
        PLACEHOLDER_REGISTRY,
        compile_pipeline,
        ensure_compile_stack,
    )

    context, registry = PLACEHOLDER_CONTEXT, PLACEHOLDER_REGISTRY
    stack = _registered_stack(recipe.stack_name)
    if stack is not None:
        _flavor, orchestrator = _component_config(stack, StackComponentType.ORCHESTRATOR)
        context = orchestrator.get("kubernetes_context") or context
        _flavor, registry_config = _component_config(stack, StackComponentType.CONTAINER_REGISTRY)
        registry = registry_config.get("uri") or registry
    # ZenML resolves secret names when it compiles; a missing one is reported, not fatal here.
    existing = [name for name in config.get("secrets") or [] if find_secret(name) is not None]
    config = {**config, "secrets": existing}
    compile_stack = ensure_compile_stack(kube_context=context, registry_uri=registry)
    return compile_pipeline(
        pipeline_obj, config, repository=f"{registry}/zenml", stack=compile_stack
    )


def describe(compiled: Any) -> str:
    """One line per task: step, image, resources, upstream steps."""
    lines = []
    for step, task in compiled.tasks.items():
        resources = ", ".join(
            part
            for part in (
                f"cpu {task.cpu_limit}" if task.cpu_limit else "",
                f"memory {task.memory_limit}" if task.memory_limit else "",
                f"{task.accelerator_count} x {task.accelerator_type}"
                if task.accelerator_count
                else "",
            )
            if part
        )
        after = ", ".join(sorted(task.dependencies)) or "-"
        lines.append(f"  {step}: {task.image} [{resources}] after {after}")
    return "\n".join(lines)


@contextlib.contextmanager
def stack_run(stack_key: str | None, pipeline_obj: Any, config: dict) -> Iterator[dict]:
    """Prepare a pipeline run on a stack; yields the config to run with.

    Without a stack the config is yielded unchanged and the active ZenML stack is used. With one,
    its overlay is merged in and its ZenML stack is active inside the block (the previous one is
    restored after). A remote stack that can't run from here is compiled instead and
    `ClusterNeeded` raised, naming the compiled spec and what is missing.

    Args:
        stack_key: a recipe name from stacks/ (e.g. "kubeflow"), or None.
        pipeline_obj: the ZenML pipeline about to run.
        config: its run config.

    Raises:
        ClusterNeeded: the pipeline was compiled but a cluster run needs more (listed).
        ConfigError: the recipe or overlay is invalid.
    """
    if stack_key is None:
        yield config
        return
    from stacks.compile import active_stack

    recipe = load_recipe(stack_key)
    config = apply_stack_overlay(config, recipe.overlay_dir, pipeline_obj.name)
    if not recipe.remote:
        if _registered_stack(recipe.stack_name) is None:
            register_stack(recipe.key, {})
        with active_stack(recipe.stack_name):
            yield config
        return
    problems = remote_problems(recipe, config)
    if not problems:
        with active_stack(recipe.stack_name):
            yield config
        return
    compiled = compile_without_cluster(recipe, pipeline_obj, config)
    print(f"Compiled {compiled.pipeline_name} for Kubeflow: {compiled.path}")
    print(describe(compiled))
    raise ClusterNeeded(
        f"{pipeline_obj.name} compiled to {compiled.path}; not submitted, a Kubeflow cluster "
        "run needs what is missing here: " + "; ".join(problems) + " (see docs/kubeflow.md)"
    )
