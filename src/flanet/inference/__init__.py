"""Video inference: streaming segmentation, ``flanet predict``, export and benchmarks (issue 6)."""

from flanet.inference.predict import predict_to_folder
from flanet.inference.streaming import FrameResult, VideoSegmenter

__all__ = ["FrameResult", "VideoSegmenter", "predict_to_folder"]
