"""Runtimes of :class:`~flanet.inference.VideoSegmenter`: PyTorch, and the exported parts in onnxruntime or OpenVINO.

One interface, :class:`~flanet.inference.runtimes.base.Runner` (``per_frame_state`` of one frame,
``predict`` of a window, ``create`` from a model and :class:`~flanet.inference.runtimes.base.RuntimeOptions`).
A runtime is one module plus its line in :data:`RUNTIMES` (docs/architecture.md). This module imports no
torch, so ``flanet --help`` lists the choices.
"""

from __future__ import annotations

import importlib
from typing import Any

#: Backend name -> ``module:class`` of its :class:`~flanet.inference.runtimes.base.Runner`.
RUNTIMES: dict[str, str] = {
    "pytorch": "flanet.inference.runtimes.pytorch_runner:PyTorchRunner",
    "onnxruntime": "flanet.inference.runtimes.onnxruntime_runner:OnnxRunner",
    "openvino": "flanet.inference.runtimes.openvino_runner:OpenVinoRunner",
}
#: Backends of :class:`~flanet.inference.VideoSegmenter` (``--backend`` choices).
BACKENDS: tuple[str, ...] = tuple(RUNTIMES)


def runner_class(backend: str) -> Any:
    """The :class:`~flanet.inference.runtimes.base.Runner` subclass of ``backend`` (imported now).

    Raises:
        ValueError: an unknown backend.
    """
    if backend not in RUNTIMES:
        raise ValueError(f"backend {backend!r}: expected one of {', '.join(BACKENDS)}")
    module, name = RUNTIMES[backend].split(":")
    return getattr(importlib.import_module(module), name)
