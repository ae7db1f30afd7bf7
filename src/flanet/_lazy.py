"""Lazy package exports (PEP 562), so ``flanet --help`` does not import torch, Lightning or timm.

A package lists which of its modules defines each public name; the module is imported the
first time the name is used (``from flanet.data import ClipDataset`` works as before).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any


def lazy_exports(
    package: str, exports: Mapping[str, Sequence[str]]
) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """``__getattr__``, ``__dir__`` and ``__all__`` for a package.

    Args:
        package: the package's ``__name__`` (for error messages).
        exports: module path -> the public names it defines.
    """
    origin = {name: module for module, names in exports.items() for name in names}
    public = sorted(origin)

    def __getattr__(name: str) -> Any:
        if name not in origin:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(origin[name]), name)

    def __dir__() -> list[str]:
        return public

    return __getattr__, __dir__, public
