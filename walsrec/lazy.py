"""Imports deferred to first use: attributes of a package (PEP 562, for `steps` and `pipelines`)
and heavy modules (`LazyModule`)."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_attributes(package: str, modules: Mapping[str, str]) -> Callable[[str], Any]:
    """A module-level `__getattr__` that imports `modules[name]` and returns its `name`.

    Args:
        package: the package's `__name__` (for the AttributeError of an unknown name).
        modules: attribute name -> the module that defines it.
    """

    def __getattr__(name: str) -> Any:
        if name in modules:
            return getattr(importlib.import_module(modules[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


class LazyModule:
    """A stand-in for `import name as alias` that imports the module on first attribute use.

    For pandas and pyarrow in the data layer: a step's signature needs `Interactions` and
    `Dataset`, and a command's config check needs the split's config class, long before (or
    without) any data being read, and importing both costs about 0.3 s. Use it only at module
    level (`pd = LazyModule("pandas")`), in modules with `from __future__ import annotations`
    so that annotations never touch it.
    """

    __slots__ = ("_module", "_name")

    def __init__(self, name: str) -> None:
        self._name = name
        self._module: Any = None

    def __getattr__(self, attribute: str) -> Any:
        if self._module is None:
            self._module = importlib.import_module(self._name)
        return getattr(self._module, attribute)

    def __repr__(self) -> str:
        state = "imported" if self._module is not None else "not imported yet"
        return f"<LazyModule {self._name!r} ({state})>"
