"""Small convolution blocks used across the FLA-Net heads."""

from __future__ import annotations

from torch import Tensor, nn


def group_norm(channels: int, max_groups: int = 32) -> nn.GroupNorm:
    """GroupNorm with the largest group count <= ``max_groups`` that divides ``channels``."""
    groups = max(g for g in range(1, min(max_groups, channels) + 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


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
