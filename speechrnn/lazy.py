"""Lazy re-exports for package ``__init__`` modules: ``speechrnn --help`` and light commands
must not import torch and numba just because a package names a class that needs them."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def lazy_exports(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` that imports ``exports[name]`` (a module) on first use of
    ``name`` and returns its attribute of that name."""

    def attribute(name: str) -> object:
        if name in exports:
            return getattr(importlib.import_module(exports[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return attribute
