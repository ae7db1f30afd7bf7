"""Models: FLA-Net, its Table 3 ablations and the compared methods, in one registry.

>>> from flanet.models import create_model
>>> model = create_model("flanet", encoder="resnet18")
"""

from flanet._lazy import lazy_exports

__getattr__, __dir__, __all__ = lazy_exports(
    __name__,
    {
        "flanet.models.checkpoint": ("CheckpointError", "LoadedCheckpoint", "LoadedDiagnosis", "image_size_from_metadata", "load_checkpoint", "save_checkpoint"),
        "flanet.models.registry": ("ModelError", "ModelInfo", "ModelOptions", "PaperRow", "create_model",
                                   "default_contrastive_weight", "list_models", "model_options", "model_spec",
                                   "rebuild_model", "register_model"),
        "flanet.models.variants": ("TABLE3_ROWS", "FLANetOptions"),
        "flanet.models.diagnosis": ("DiagnosisHead", "RunningDiagnosis"),
        "flanet.models.flanet": ("FLANet",),
        "flanet.models.outputs": ("SegmentationOutput",),
        "flanet.models.weights": ("EncoderWeightsError",),
        "flanet.models.windows": ("CausalWindows", "causal_window_indices", "gather_windows"),
    },
)
