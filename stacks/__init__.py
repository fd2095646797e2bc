"""Stack recipes (local, kubeflow), their config overlays, and running or compiling on them.

- `stacks/<name>.yaml`: one recipe per target; `register.py` validates and registers it.
- `overlay.py`: merges configs/<stack>/ into a pipeline config.
- `switch.py`: `--stack NAME` (run with the overlay on that stack, or compile without a cluster).
- `compile.py`: compile to the Kubeflow pipeline spec offline and compare it with the config.
- `kubeflow_orchestrator.py`: the `walsrec_kubeflow` orchestrator flavor.
"""

from stacks.register import available_recipes, load_recipe, register_stack
from stacks.switch import ClusterNeeded, stack_run

__all__ = ["ClusterNeeded", "available_recipes", "load_recipe", "register_stack", "stack_run"]
