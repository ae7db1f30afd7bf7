"""A timm Vision Transformer (plain or CNN hybrid) as a per-frame encoder of feature maps.

TransUNet (Chen et al. 2021, Section 3.2) reads the hybrid's CNN maps as skip connections and
the last Transformer layer as the bottleneck; SETR (Zheng et al., CVPR 2021, Section 3.3) reads
several Transformer layers (PUP decoder and its auxiliary heads). Both take their encoder from
timm: ``vit_base_r50_s16_384`` is TransUNet's R50-ViT-B/16, ``vit_large_patch16_384`` SETR's
ViT-L/16. The positional embedding is kept at the grid of ``img_size`` and resampled by timm
for other input sizes (``dynamic_img_size``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import timm
import torch
from timm.layers import HybridEmbed
from timm.models.resnetv2 import ResNetV2
from timm.models.vision_transformer import VisionTransformer, checkpoint_filter_fn
from torch import Tensor, nn

from flanet.models.weights import IMAGENET, EncoderWeightsError, pretrained_state_dict, read_state_dict


def describe_vit(name: str, timm_kwargs: dict[str, Any] | None = None) -> tuple[int, bool]:
    """``(depth, hybrid)`` of timm ViT ``name``, read without allocating its weights."""
    if name not in timm.list_models():
        raise ValueError(f"unknown timm encoder {name!r}; see timm.list_models()")
    with torch.device("meta"):
        vit = timm.create_model(name, pretrained=False, num_classes=0, **(timm_kwargs or {}))
    if not isinstance(vit, VisionTransformer):
        raise ValueError(f"encoder {name!r} is not a timm VisionTransformer (vit_*); this method needs one")
    return len(vit.blocks), isinstance(vit.patch_embed, HybridEmbed)


class ViTEncoder(nn.Module):
    """``(N, 3, H, W)`` -> ``[CNN maps of a hybrid (stride 2, 4, 8, ...), token maps of chosen layers]``.

    Args:
        name: a timm ``VisionTransformer`` (``vit_*``), plain or hybrid (``vit_*_r50_*``).
        weights: ``"imagenet"``, a local state dict file of that timm model, or None.
        layers: Transformer layers (0-based) whose outputs are returned as ``(N, D, H/p, W/p)``
            maps, after the final LayerNorm; negative numbers count from the last layer.
        img_size: the input side the positional embedding is stored for.
        cnn_levels: at most how many of a hybrid's CNN levels to return (shallowest first); a plain
            ViT has none.
        timm_kwargs: further ``timm.create_model`` arguments (e.g. ``depth``, ``embed_dim`` for small tests).
    """

    def __init__(self, name: str, weights: str | None, layers: Sequence[int], img_size: int,
                 cnn_levels: int = 0, timm_kwargs: dict[str, Any] | None = None) -> None:
        super().__init__()
        describe_vit(name, timm_kwargs)  # a timm VisionTransformer, or a clear error
        vit = timm.create_model(name, pretrained=False, num_classes=0, img_size=img_size, dynamic_img_size=True,
                                **(timm_kwargs or {}))
        self.vit = vit
        depth = len(vit.blocks)
        if not layers or any(not -depth <= layer < depth for layer in layers):
            raise ValueError(f"encoder {name!r} has {depth} layers; layers {list(layers)} do not exist")
        self.layers: tuple[int, ...] = tuple(sorted({layer % depth for layer in layers}))
        # skips need a hybrid CNN that reports its levels: timm's ResNetV2 (R50-ViT, R26-ViT); other
        # hybrids (e.g. the stem-only R-Ti) run their patch embedding whole, without skips
        hybrid = isinstance(vit.patch_embed, HybridEmbed) and isinstance(vit.patch_embed.backbone, ResNetV2)
        info = vit.patch_embed.backbone.feature_info if hybrid else []
        cnn_levels = min(cnn_levels, len(info))
        self.hybrid = hybrid
        self.cnn_levels = cnn_levels
        self.cnn_channels: tuple[int, ...] = tuple(level["num_chs"] for level in info[:cnn_levels])
        self.cnn_reductions: tuple[int, ...] = tuple(level["reduction"] for level in info[:cnn_levels])
        self.embed_dim: int = vit.embed_dim
        self.patch_stride: int = int(vit.patch_embed.feat_ratio())  # the token grid's stride
        if weights is not None:
            self.load_weights(name, weights)

    def load_weights(self, name: str, weights: str) -> None:
        """timm's ImageNet weights or a local file, positional embedding resampled to this grid (strict)."""
        state, source = pretrained_state_dict(name) if str(weights) == IMAGENET else (read_state_dict(weights), weights)
        state = checkpoint_filter_fn(state, self.vit)
        state = {k: v for k, v in state.items() if not k.startswith("head.")}
        missing, unexpected = self.vit.load_state_dict(state, strict=False)
        missing = [k for k in missing if not k.startswith("head.")]
        if missing or unexpected:
            raise EncoderWeightsError(f"{source}: weights do not fit encoder {name!r} (missing {missing[:5]}, "
                                      f"unexpected {unexpected[:5]})")

    def forward(self, x: Tensor) -> list[Tensor]:
        """``(N, 3, H, W)`` -> CNN maps (hybrid) then one ``(N, D, H/p, W/p)`` map per chosen layer."""
        vit = self.vit
        if self.hybrid:  # the hybrid's CNN once, keeping its early levels for the decoder's skips
            cnn = vit.patch_embed.backbone.forward_intermediates(x, intermediates_only=True)
            skips = cnn[: self.cnn_levels]
            tokens = vit.patch_embed.proj(cnn[-1]).permute(0, 2, 3, 1)  # (N, h, w, D)
        else:
            skips, tokens = [], vit.patch_embed(x)  # (N, h, w, D) with dynamic_img_size
        grid = tokens.shape[1:3]
        hidden = vit.norm_pre(vit.patch_drop(vit._pos_embed(tokens)))
        maps = []
        for index, block in enumerate(vit.blocks):
            hidden = block(hidden)
            if index in self.layers:
                patches = vit.norm(hidden)[:, vit.num_prefix_tokens:]  # (N, h*w, D)
                maps.append(patches.transpose(1, 2).unflatten(2, tuple(grid)))
            if index >= max(self.layers):
                break
        return [*skips, *maps]

