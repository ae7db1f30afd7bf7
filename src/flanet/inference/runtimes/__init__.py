"""Runtimes of :class:`~flanet.inference.VideoSegmenter`: PyTorch, and the exported parts in onnxruntime or OpenVINO.

One interface, :class:`~flanet.inference.runtimes.exported.ExportedRunner` (``per_frame_state`` of one
frame, ``predict`` of a window); each runtime is one module (``onnxruntime_runner``, ``openvino_runner``)
plus its name in :data:`BACKENDS`. This module imports no torch, so ``flanet --help`` lists the choices.
"""

#: Backends of :class:`~flanet.inference.VideoSegmenter`: PyTorch, and the exported parts in onnxruntime or
#: OpenVINO (:mod:`flanet.inference.runtimes.openvino_runner`).
BACKENDS: tuple[str, ...] = ("pytorch", "onnxruntime", "openvino")
