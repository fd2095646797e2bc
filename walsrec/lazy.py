"""Attributes of a package imported on first use (PEP 562), for `steps` and `pipelines`."""

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
