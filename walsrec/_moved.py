"""Old module paths of the flat layout, still importable: `import walsrec.model` gives the very
module `walsrec.models.recommender`, so pickle-free artifacts that ZenML stores recorded by
dotted path (`walsrec.model.RecommenderModel`) and users' imports keep working.

`install()` (called by `walsrec/__init__.py`) puts a finder on `sys.meta_path`; it answers only
for the names in `MOVED` and imports nothing until one of them is imported. The project itself
imports the new paths only.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import sys
from types import ModuleType

# old dotted name -> new dotted name
MOVED: dict[str, str] = {
    "walsrec.baselines": "walsrec.models.popularity",
    "walsrec.bayes": "walsrec.models.bayes",
    "walsrec.ensemble": "walsrec.models.ensemble",
    "walsrec.fold_in": "walsrec.models.fold_in",
    "walsrec.itemknn": "walsrec.models.itemknn",
    "walsrec.model": "walsrec.models.recommender",
    "walsrec.wals": "walsrec.models.wals",
    "walsrec.wals_config": "walsrec.models.wals_config",
    "walsrec.item_table": "walsrec.inference.item_table",
    "walsrec.recommend": "walsrec.inference.recommend",
    "walsrec.topk": "walsrec.inference.topk",
    "walsrec.metrics": "walsrec.evaluation.metrics",
    "walsrec.reports": "walsrec.evaluation.reports",
    "walsrec.tuning_config": "walsrec.tuning.config",
}


# Finder and loader by their protocols, not importlib.abc's classes: importing importlib.abc
# (with importlib.resources) would triple the cost of `import walsrec`.


class _AliasLoader:
    """Loads an old name as the module of its new name (imported by `create_module`)."""

    def __init__(self, new_name: str) -> None:
        self.new_name = new_name
        self.new_spec: importlib.machinery.ModuleSpec | None = None

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType:
        module = importlib.import_module(self.new_name)
        self.new_spec = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The import system has just set `module.__spec__` to the old name's spec: the module
        # keeps its own (name, origin and loader of the new path).
        module.__spec__ = self.new_spec


class _MovedFinder:
    """Finds the old names of `MOVED` (and nothing else)."""

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        new_name = MOVED.get(fullname)
        if new_name is None:
            return None
        return importlib.machinery.ModuleSpec(fullname, _AliasLoader(new_name))


_FINDER = _MovedFinder()


def install() -> None:
    """Put the finder on `sys.meta_path` once (first, so that no stale file could shadow it)."""
    if not any(isinstance(finder, _MovedFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _FINDER)
