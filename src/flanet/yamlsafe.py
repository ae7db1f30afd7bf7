"""Loading YAML that a user gave us without letting it cost unbounded memory.

PyYAML's safe loader runs no code, but an alias bomb ("billion laughs": each anchor a list of
aliases of the previous one) of a few hundred bytes is a tree of a billion nodes for anything that
walks it (merging it into a configuration, copying or writing it). Before building anything,
:func:`load_yaml` refuses a text longer than :data:`MAX_CHARS` and counts, from the parser's event stream
alone, how many nodes the document has once every alias is expanded.
"""

from __future__ import annotations

from typing import Any

import yaml

#: Longest YAML text read, in characters (a training recipe is a few thousand).
MAX_CHARS = 1_000_000
#: Most nodes (scalars and collections) a document may have with its aliases expanded.
MAX_NODES = 100_000


class YamlLimitError(ValueError):
    """A YAML text is refused before it is built: too large, or its aliases expand too far."""


def expanded_nodes(text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader, limit: int = MAX_NODES) -> int:
    """Nodes of ``text`` with aliases expanded, counted from parser events (stops once over ``limit``).

    Raises:
        yaml.YAMLError: the text is not valid YAML.
    """
    sizes: dict[str, int] = {}  # anchor -> expanded size of its node
    open_nodes: list[list[Any]] = []  # [anchor, size so far] of each collection being read
    total = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, (yaml.SequenceStartEvent, yaml.MappingStartEvent)):
            open_nodes.append([event.anchor, 1])
            continue
        if isinstance(event, (yaml.SequenceEndEvent, yaml.MappingEndEvent)):
            anchor, size = open_nodes.pop()
        elif isinstance(event, yaml.ScalarEvent):
            anchor, size = event.anchor, 1
        elif isinstance(event, yaml.AliasEvent):
            anchor, size = None, sizes.get(event.anchor, 1)
        else:
            continue
        if anchor is not None:
            sizes[anchor] = size
        if open_nodes:
            open_nodes[-1][1] += size
        else:
            total += size
        if total > limit or (open_nodes and open_nodes[-1][1] > limit):
            return limit + 1
    return total


def load_yaml(text: str, loader: type[yaml.SafeLoader] = yaml.SafeLoader, source: str = "YAML text") -> Any:
    """``yaml.load(text, Loader=loader)`` once ``text`` is known to be small with its aliases expanded.

    Args:
        text: the YAML document.
        loader: a safe loader class (``yaml.SafeLoader`` or a subclass of it).
        source: the file or name the text came from, for the error message.

    Raises:
        YamlLimitError: the text is over :data:`MAX_CHARS`, or would have more than
            :data:`MAX_NODES` nodes with its aliases expanded (named with ``source``).
        yaml.YAMLError: the text is not valid YAML.
    """
    if len(text) > MAX_CHARS:
        raise YamlLimitError(f"{source}: YAML of {len(text)} characters refused (at most {MAX_CHARS} are read)")
    if expanded_nodes(text, loader) > MAX_NODES:
        raise YamlLimitError(f"{source}: YAML refused before expansion: its aliases expand it to more than "
                             f"{MAX_NODES} nodes (an alias bomb?)")
    return yaml.load(text, Loader=loader)
