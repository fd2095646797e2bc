"""ZenML's Kubeflow orchestrator with per-step memory and GPU limits that compile.

ZenML 0.98's `KubeflowOrchestrator` passes memory to kfp as a float in GB (`4.0`), which kfp
2.16 rejects ("expected string"), so any `memory:` in a step's resources breaks compilation; and it
only asks for a GPU when the step also sets a node selector named `accelerator`. This flavor is
the stock orchestrator (same config, settings, validation and submission) with resource handling
that writes Kubernetes quantities (`4G`, `512Mi`) and requests `nvidia.com/gpu` when a step asks
for GPUs. Registered as the custom flavor `walsrec_kubeflow` by `stacks/register.py`.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from zenml.integrations.kubeflow.flavors import KubeflowOrchestratorFlavor
from zenml.integrations.kubeflow.orchestrators import KubeflowOrchestrator

if TYPE_CHECKING:
    from kfp import dsl
    from zenml.config.resource_settings import ResourceSettings

FLAVOR_NAME = "walsrec_kubeflow"
FLAVOR_SOURCE = "stacks.kubeflow_orchestrator.WalsrecKubeflowOrchestratorFlavor"
DEFAULT_GPU_RESOURCE = "nvidia.com/gpu"

_ZENML_MEMORY = re.compile(r"^(\d+)(KB|KiB|MB|MiB|GB|GiB|TB|TiB|PB|PiB)$")


def kubernetes_memory(memory: str) -> str:
    """A ZenML memory string ("4GB", "512MiB") as a Kubernetes quantity ("4G", "512Mi").

    Args:
        memory: memory as ZenML's `ResourceSettings.memory` accepts it.

    Returns:
        The same amount in the notation Kubernetes and kfp accept.

    Raises:
        ValueError: if `memory` is not in ZenML's notation.
    """
    match = _ZENML_MEMORY.match(memory)
    if match is None:
        raise ValueError(f"memory {memory!r} is not like 4GB or 512MiB")
    amount, unit = match.groups()
    return amount + unit[:-1]  # drop the trailing "B": GB -> G, GiB -> Gi


class WalsrecKubeflowOrchestrator(KubeflowOrchestrator):
    """The stock Kubeflow orchestrator with CPU, memory and GPU limits written as kfp expects."""

    def _configure_container_resources(
        self,
        dynamic_component: dsl.PipelineTask,
        resource_settings: ResourceSettings,
        node_selector_constraint: tuple[str, str] | None = None,
    ) -> dsl.PipelineTask:
        task = dynamic_component
        if resource_settings.cpu_count:
            # Kubernetes sets the request equal to a limit given alone: the pod is guaranteed it.
            task = task.set_cpu_limit(_cpu_quantity(resource_settings.cpu_count))
        if resource_settings.memory:
            task = task.set_memory_limit(kubernetes_memory(resource_settings.memory))
        gpu_count = resource_settings.gpu_count or 0
        if gpu_count > 0:
            # ZenML reads the GPU type from a node selector named `accelerator`; without one the
            # task asks for the standard NVIDIA device-plugin resource.
            accelerator = (
                node_selector_constraint[1] if node_selector_constraint else DEFAULT_GPU_RESOURCE
            )
            task = task.set_accelerator_type(accelerator).set_accelerator_limit(gpu_count)
        return task


def _cpu_quantity(cpu_count: float) -> str:
    return str(int(cpu_count)) if float(cpu_count).is_integer() else f"{int(cpu_count * 1000)}m"


class WalsrecKubeflowOrchestratorFlavor(KubeflowOrchestratorFlavor):
    """Flavor `walsrec_kubeflow`: ZenML's Kubeflow flavor with `WalsrecKubeflowOrchestrator`."""

    @property
    def name(self) -> str:
        """The flavor name stacks refer to."""
        return FLAVOR_NAME

    @property
    def implementation_class(self) -> type[WalsrecKubeflowOrchestrator]:
        """The orchestrator class."""
        return WalsrecKubeflowOrchestrator
