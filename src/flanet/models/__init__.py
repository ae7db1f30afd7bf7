"""Models: FLA-Net, its Table 3 ablations and the image baselines.

>>> from flanet.models import create_model
>>> model = create_model("flanet", encoder="resnet18")
"""

from flanet._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "flanet.models.checkpoint": ("CheckpointError", "LoadedCheckpoint", "image_size_from_metadata", "load_checkpoint", "save_checkpoint"),
        "flanet.models.factory": ("TABLE3_ROWS", "create_model", "default_contrastive_weight", "describe_models", "list_models"),
        "flanet.models.flanet": ("FLANet",),
        "flanet.models.outputs": ("SegmentationOutput",),
        "flanet.models.weights": ("EncoderWeightsError",),
        "flanet.models.windows": ("CausalWindows", "causal_window_indices", "gather_windows"),
    },
)
