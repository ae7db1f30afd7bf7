"""Typed values: a value read from YAML or given as a keyword, converted to a type hint or refused.

One home for the checks of configuration keys (:mod:`flanet.training.schema`) and of model options
(:mod:`flanet.models.registry`). Standard library only.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal

#: What :func:`convert` returns for a value that is not of the type.
WRONG = object()


def convert(value: Any, hint: Any) -> Any:
    """``value`` as ``hint``, or :data:`WRONG`."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        for arg in args:
            converted = convert(value, arg)
            if converted is not WRONG:
                return converted
        return WRONG
    if origin is Literal:
        return value if value in args else WRONG
    if hint is type(None):
        return value if value is None else WRONG
    if hint is bool:
        return value if isinstance(value, bool) else WRONG
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is int:
        return value if number and isinstance(value, int) else WRONG
    if hint is float:
        return float(value) if number else WRONG
    if hint is str:
        return value if isinstance(value, str) else str(value) if number else WRONG
    if origin in (list, Sequence) or hint in (list, Sequence):
        if not isinstance(value, (list, tuple)):
            return WRONG
        items = [convert(item, args[0] if args else Any) for item in value]
        return WRONG if any(item is WRONG for item in items) else items
    if origin in (dict, Mapping) or hint in (dict, Mapping):
        return {str(k): v for k, v in value.items()} if isinstance(value, Mapping) else WRONG
    return value if isinstance(hint, type) and isinstance(value, hint) else WRONG


def describe_type(hint: Any) -> str:
    """``an integer``, ``a string or null``, ``a list of a number``... as a message names a type."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(describe_type(arg) for arg in args)
    if origin is Literal:
        return " or ".join(repr(arg) for arg in args)
    if hint is type(None):
        return "null"
    if origin in (list, Sequence):
        return f"a list of {describe_type(args[0])}" if args else "a list"
    if origin in (dict, Mapping):
        return "a mapping"
    names = {int: "an integer", float: "a number", bool: "true or false", str: "a string"}
    return names.get(hint, getattr(hint, "__name__", str(hint)))
