"""Video data layer: layouts, clip sampling, targets, augmentation, checks and synthetic data.

Public API (see docs/data.md)::

    from flanet.data import discover, ClipDataset
    video_set = discover("path/to/data")          # layout auto-detected
    train = ClipDataset(video_set, "train", image_size=352, augment=True)
"""

from flanet.data.augment import AugmentConfig
from flanet.data.bboxes import mask_bbox
from flanet.data.clips import ClipDataset, clip_frame_indices, negative_indices
from flanet.data.errors import DataError, Problem
from flanet.data.images import IMAGENET_MEAN, IMAGENET_STD, read_image, read_mask, to_model_input
from flanet.data.labels import read_labels
from flanet.data.layouts import discover
from flanet.data.splits import make_splits
from flanet.data.targets import gaussian_heatmap
from flanet.data.videoset import Video, VideoSet

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "AugmentConfig",
    "ClipDataset",
    "DataError",
    "Problem",
    "Video",
    "VideoSet",
    "clip_frame_indices",
    "discover",
    "gaussian_heatmap",
    "make_splits",
    "mask_bbox",
    "negative_indices",
    "read_image",
    "read_labels",
    "read_mask",
    "to_model_input",
]
