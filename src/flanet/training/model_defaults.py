"""Per-model defaults of a training configuration, filled in before a run starts.

Table 3 rows share one recipe but not one loss: only ``flanet`` (the paper's full method)
trains with the contrastive loss of eq. (1). Recipes therefore leave
``loss.contrastive_weight`` at ``null`` ("the model's default") and :func:`resolve_model_defaults`
writes the value actually used, so a run folder's ``config.yaml`` records it.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from flanet.models import default_contrastive_weight


def resolve_model_defaults(config: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``config`` with the ``null`` keys that depend on the model filled in.

    ``loss.contrastive_weight: null`` becomes
    :func:`flanet.models.default_contrastive_weight` of ``model.name`` (1 for ``flanet``, 0
    otherwise); an explicit number is kept as given.

    Raises:
        ValueError: unknown ``model.name``.
    """
    resolved = copy.deepcopy(dict(config))
    loss = resolved["loss"]
    if loss.get("contrastive_weight") is None:
        loss["contrastive_weight"] = default_contrastive_weight(resolved["model"]["name"])
    return resolved
