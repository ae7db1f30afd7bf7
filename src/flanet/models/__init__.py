"""Models: FLA-Net, its Table 3 ablations and the image baselines.

>>> from flanet.models import create_model
>>> model = create_model("flanet", encoder="resnet18")
"""

from flanet.models.checkpoint import CheckpointError, LoadedCheckpoint, load_checkpoint, save_checkpoint
from flanet.models.factory import TABLE3_ROWS, create_model, default_contrastive_weight, describe_models, list_models
from flanet.models.flanet import FLANet
from flanet.models.outputs import SegmentationOutput
from flanet.models.weights import EncoderWeightsError

__all__ = [
    "TABLE3_ROWS",
    "CheckpointError",
    "EncoderWeightsError",
    "FLANet",
    "LoadedCheckpoint",
    "SegmentationOutput",
    "create_model",
    "default_contrastive_weight",
    "describe_models",
    "list_models",
    "load_checkpoint",
    "save_checkpoint",
]
