"""Small convolution blocks used across the FLA-Net heads."""

from __future__ import annotations

import math

from torch import Tensor, nn


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``max_groups`` that divides ``channels``."""
    groups = max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


def mask_classifier(in_channels: int, prior: float | None, bias: bool = True) -> nn.Conv2d:
    """The 1x1 convolution that gives a mask's logits, its bias started at the lesion ``prior`` when given.

    With ``prior`` the bias starts at ``log(prior / (1 - prior))`` (the prior initialisation of Lin et
    al., "Focal Loss for Dense Object Detection", ICCV 2017, Sec. 4.1), so every pixel starts near
    lesion probability ``prior`` rather than 0.5; in short schedules a head started at 0.5 kept a
    probability floor over the background (docs/benchmarks.md, "Where FLA-Net's MAE came from").
    Without it: PyTorch's default initialisation, with a bias when ``bias``.

    Raises:
        ValueError: ``prior`` outside (0, 1).
    """
    classifier = nn.Conv2d(in_channels, 1, 1, bias=bias or prior is not None)
    if prior is not None:
        if not 0.0 < prior < 1.0:
            raise ValueError(f"mask_prior must be in (0, 1), got {prior}")
        nn.init.constant_(classifier.bias, math.log(prior / (1.0 - prior)))
    return classifier


class BConv(nn.Sequential):
    """"BConv" of Section 3.1: convolution, GroupNorm, ReLU (in that order, as the paper).

    The authors' code applies ReLU before GroupNorm; we follow the paper's order.

    Args:
        in_channels: input channels.
        out_channels: output channels.
        kernel_size: 3 for the paper's BConv; 1 for the lean channel projections.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 3) -> None:
        super().__init__(
            nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False),
            group_norm(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: Tensor) -> Tensor:  # (B, C_in, h, w) -> (B, C_out, h, w)
        return super().forward(x)
