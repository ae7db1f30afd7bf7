"""Per-frame encoder: a timm ``features_only`` backbone plus a lean channel neck.

Everything here runs once per frame, so its output can be cached and reused by the next
outputs of a video (streaming, Section 3: f_t, f_{t-1}, f_{t-2} come from one encoder).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path

import timm
import torch
from torch import Tensor, nn

from flanet.defaults import IMAGE_SIZE
from flanet.models.blocks import BConv
from flanet.models.contract import VideoSegmentationModel
from flanet.models.weights import load_encoder_weights


def check_input_size(height: int, width: int, multiple: int) -> None:
    """Raises ``ValueError`` naming the sizes that work when (H, W) does not fit the encoder: the one size check."""
    if height % multiple or width % multiple or height < multiple or width < multiple:
        examples = ", ".join(str(multiple * k) for k in (2, 4, 8, 11, 16))
        raise ValueError(
            f"input size {height}x{width} does not fit this model: height and width must each be a "
            f"positive multiple of {multiple} (e.g. {examples}; the paper uses {IMAGE_SIZE})"
        )


def check_image_size(model: VideoSegmentationModel, image_size: int) -> None:
    """Raises ``ValueError`` unless a square ``image_size`` input fits ``model`` (:func:`check_input_size`)."""
    check_input_size(image_size, image_size, model.size_multiple)


class FrameEncoder(nn.Module):
    """Encoder of Fig. 2 applied to single frames, returning the last ``num_levels`` levels.

    Args:
        backbone: a timm ``features_only`` model.
        neck_channels: output channels per level (shallow to deep); a 1x1 BConv projects
            each backbone level to it, so the fusion and decoders stay lean whatever the
            backbone's widths.
    """

    def __init__(self, backbone: nn.Module, neck_channels: Sequence[int]) -> None:
        super().__init__()
        info = backbone.feature_info
        in_channels = info.channels()
        if len(in_channels) != len(neck_channels):
            raise ValueError(
                f"backbone gives {len(in_channels)} levels but neck_channels has {len(neck_channels)}"
            )
        self.backbone = backbone
        self.neck = nn.ModuleList(
            BConv(c_in, c_out, kernel_size=1) for c_in, c_out in zip(in_channels, neck_channels)
        )
        self.out_channels: tuple[int, ...] = tuple(neck_channels)
        self.reductions: tuple[int, ...] = tuple(info.reduction())

    @property
    def size_multiple(self) -> int:
        """Input height and width must be multiples of this (the deepest level's stride)."""
        return max(self.reductions)

    def forward(self, frames: Tensor) -> list[Tensor]:
        """``(N, 3, H, W)`` -> per level ``(N, C_l, H / r_l, W / r_l)``, shallow to deep."""
        check_input_size(frames.shape[-2], frames.shape[-1], self.size_multiple)
        return [neck(f) for neck, f in zip(self.neck, self.backbone(frames))]


def fold_batch_norms(model: VideoSegmentationModel, inplace: bool = False) -> VideoSegmentationModel:
    """The model for inference with its encoder's BatchNorms folded into the convolutions.

    In eval mode a BatchNorm after a convolution is a per-channel affine map, so it folds into
    that convolution's weights and bias (torch.fx traces the timm backbone and every ``nn.BatchNorm2d``
    that only a ``nn.Conv2d`` feeds is folded, as ``torch.fx.experimental.optimization.fuse`` does): the same
    function to float rounding, one pass over each activation map fewer (Res2Net-50: all 85
    BatchNorms). timm's own norm-and-activation modules (``BatchNormAct2d`` of EfficientNet,
    RegNet) are traced through and kept as they are. A model whose encoder is not a
    :class:`FrameEncoder` (the image baselines) is returned unchanged.

    Args:
        model: the model.
        inplace: fold into ``model`` itself (put in eval mode; its unfolded backbone is released): for a model
            nobody else uses, such as one a segmenter loaded from a checkpoint, so that no second copy of the
            weights is held. False (default): ``model`` is left as it is (training mode, BatchNorm statistics
            and all) and a copy in eval mode is returned that holds new tensors only for the folded
            convolutions: every other parameter and buffer is ``model``'s own (shared, not copied), so the
            copy is for inference with the weights as they are now: train ``model`` further and fold again.

    Raises:
        torch.fx.proxy.TraceError, TypeError: torch.fx cannot trace the backbone (control flow
            on tensor values).
    """
    if not isinstance(model.encoder, FrameEncoder):
        return model
    if inplace:
        folded = model.eval()
    else:
        was_training = model.training
        shared = {id(t): t for t in (*model.parameters(), *model.buffers())}  # modules copied, tensors shared
        folded = copy.deepcopy(model.eval(), memo=shared)
        model.train(was_training)
    folded.encoder.backbone = _fold_traced(folded.encoder.backbone)
    return folded


@torch.no_grad()
def _fold_traced(backbone: nn.Module) -> nn.Module:
    """``backbone`` traced by torch.fx, each BatchNorm that only a convolution feeds folded into that convolution.

    As ``torch.fx.experimental.optimization.fuse`` (same ``fuse_conv_bn_weights``, the same numbers), but each
    convolution module of ``backbone`` gets its folded weights in place, one after the other, so the old
    weights are released as they are replaced: no second copy of the backbone, not even for a moment.
    """
    from torch import fx
    from torch.fx.experimental.optimization import matches_module_pattern
    from torch.nn.utils.fusion import fuse_conv_bn_weights

    traced = fx.symbolic_trace(backbone)  # refers to backbone's own modules
    modules = dict(traced.named_modules())
    for node in list(traced.graph.nodes):
        if not matches_module_pattern((nn.Conv2d, nn.BatchNorm2d), node, modules) or len(node.args[0].users) > 1:
            continue  # not a BatchNorm fed by a convolution alone
        conv, norm = modules[node.args[0].target], modules[node.target]
        if not norm.track_running_stats:
            continue
        conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, norm.running_mean, norm.running_var,
                                                      norm.eps, norm.weight, norm.bias)
        node.replace_all_uses_with(node.args[0])
        traced.graph.erase_node(node)
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced


def create_timm_backbone(
    name: str, weights: str | Path | None = None, num_levels: int = 4
) -> nn.Module:
    """Builds a timm ``features_only`` backbone giving its last ``num_levels`` levels.

    ``weights``: ``"imagenet"`` (timm's default pretrained weights through the Hugging Face
    Hub cache, see :mod:`flanet.models.weights`), a local ``.pth``/``.safetensors`` state dict
    of the timm model, or ``None`` for random weights.
    """
    if name not in timm.list_models():
        raise ValueError(f"unknown timm encoder {name!r}; see timm.list_models()")
    with torch.device("meta"):  # count the levels without allocating weights
        total = len(timm.create_model(name, features_only=True, pretrained=False).feature_info)
    if total < num_levels:
        raise ValueError(f"encoder {name!r} gives {total} feature levels, FLA-Net needs {num_levels}")
    out_indices = tuple(range(total - num_levels, total))
    backbone = timm.create_model(name, features_only=True, pretrained=False, out_indices=out_indices)
    if weights is not None:
        load_encoder_weights(backbone, name, weights)
    return backbone

