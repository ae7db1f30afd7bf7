"""Video inference, in four parts (docs/architecture.md).

* :mod:`flanet.inference.core`: the streaming core, :class:`VideoSegmenter` (one encoder pass per frame,
  the causal window, frames in flight);
* :mod:`flanet.inference.runtimes`: where the model runs (PyTorch, onnxruntime, OpenVINO) and the export;
* :mod:`flanet.inference.runs`: what ``flanet predict`` does with it (inputs, outputs, archives, live
  sources, measurements, annotation export);
* :mod:`flanet.inference.bench`: the speed harness of ``flanet bench``.
"""

from flanet._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "flanet.inference.runs.predict": ("predict_to_folder",),
        "flanet.inference.core.segmenter": ("FrameResult", "VideoSegmenter"),
    },
)
