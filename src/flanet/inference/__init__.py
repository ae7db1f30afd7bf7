"""Video inference: streaming segmentation, ``flanet predict``, export and benchmarks."""

from flanet._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "flanet.inference.predict": ("predict_to_folder",),
        "flanet.inference.streaming": ("FrameResult", "VideoSegmenter"),
    },
)
