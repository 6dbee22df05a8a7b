"""A package's names loaded when first asked for (PEP 562), so that importing the package costs nothing more.

    __getattr__ = lazy_names(__name__, {"EventStore": "core.store.store", ...})

A device's agent imports few of core's modules; loading every name of core.events and
core.store at import, or core.errors' refusals with the nats micro they derive from, was
memory it never used (bench/agent_footprint.py).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, module_of: Mapping[str, str]) -> Callable[[str], Any]:
    """The `__getattr__` of `package`: a name of `module_of` is imported from its module the first time it is asked."""

    def __getattr__(name: str) -> Any:
        module = module_of.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module), name)
        setattr(sys.modules[package], name, value)  # asked once: later lookups find it without this function
        return value

    return __getattr__
