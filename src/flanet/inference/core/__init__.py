"""The streaming core: :class:`~flanet.inference.core.segmenter.VideoSegmenter` and frames in flight."""
