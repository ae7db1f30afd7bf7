"""Video data layer: layouts, clip sampling, targets, augmentation, checks and synthetic data.

Public API (see docs/data.md)::

    from flanet.data import discover, ClipDataset
    video_set = discover("path/to/data")          # layout auto-detected
    train = ClipDataset(video_set, "train", image_size=352, augment=True)
"""

from flanet._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "flanet.data.augment": ("AugmentConfig",),
        "flanet.data.bboxes": ("mask_bbox",),
        "flanet.data.clips": ("ClipDataset", "clip_frame_indices"),
        "flanet.data.errors": ("DataError", "Problem"),
        "flanet.data.images": ("IMAGENET_MEAN", "IMAGENET_STD", "read_image", "read_mask", "to_model_input"),
        "flanet.data.labels": ("read_labels",),
        "flanet.data.layouts": ("discover",),
        "flanet.data.splits": ("make_splits",),
        "flanet.data.targets": ("gaussian_heatmap",),
        "flanet.data.videoset": ("Video", "VideoSet"),
    },
)
