"""AFB-URR's uncertain-region refinement (Liang et al., NeurIPS 2020, Sec. 3.3) and its confidence term.

Each class (background, lesion) is decoded from its own bank read into a rough logit map at stride 2;
the classes are normalised against each other. Where the two most likely classes are close the
*uncertainty* ``U = exp(1 - p_1 / p_2)`` (p_1 >= p_2 the two largest class probabilities; 1 where
they tie, e^-inf -> 0 where one dominates) is high. The refinement (URR) builds, for each class, a
local reference of the stride-2 features: their average over a 7x7 window weighted by the class's
rough probability (normalised by the window's mean probability), concatenates it with the features,
predicts a correction scaled by the window's largest class probability, and adds ``U * correction``
to the rough logits. Its confidence loss is ``||U||_2 / sqrt(HW)`` (Sec. 3.3, eq. 6).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flanet.models.video_methods.memory_blocks import ResBlock


def uncertainty(class_logits: Tensor) -> Tensor:
    """``exp(1 - p_1 / p_2)`` of ``(B, K, h, w)`` class logits -> ``(B, 1, h, w)`` in (0, 1]."""
    probs = torch.softmax(class_logits.float(), dim=1)
    top = probs.topk(2, dim=1).values
    return torch.exp(1 - top[:, :1] / (top[:, 1:] + 1e-8)).to(class_logits.dtype)


def binary_uncertainty(mask_logits: Tensor) -> Tensor:
    """:func:`uncertainty` of a one-channel lesion logit (background logit 0): ``(B, 1, H, W)``."""
    return uncertainty(torch.cat([torch.zeros_like(mask_logits), mask_logits], dim=1))


def confidence_loss(mask_logits: Tensor) -> Tensor:
    """AFB-URR's confidence loss: ``||U||_2 / sqrt(HW)`` per image, mean over the batch (``(B, 1, H, W)`` logits)."""
    u = binary_uncertainty(mask_logits.float()).flatten(1)
    return (u.norm(dim=1) / u.shape[1] ** 0.5).mean()


class UncertainRegionRefinement(nn.Module):
    """URR: refines K classes' rough logits with the stride-2 features where the classes are uncertain.

    Args:
        feature_channels: width of the stride-2 features.
        channels: width of the refinement convs (32 in the paper).
        window: side of the local averaging window (7).
    """

    def __init__(self, feature_channels: int, channels: int = 32, window: int = 7) -> None:
        super().__init__()
        self.window = window
        self.fuse = nn.Sequential(nn.Conv2d(2 * feature_channels, channels, 3, padding=1), ResBlock(channels))
        self.head = nn.Conv2d(channels, 1, 3, padding=1)

    def forward(self, rough: Tensor, features: Tensor) -> Tensor:
        """``rough (B, K, h, w)`` class logits, ``features (B, C, h, w)`` -> refined ``(B, K, h, w)``."""
        b, k, h, w = rough.shape
        probs = torch.softmax(rough, dim=1).reshape(b * k, 1, h, w)
        feats = features.repeat_interleave(k, dim=0)
        pad = self.window // 2
        local = F.avg_pool2d(feats * probs, self.window, stride=1, padding=pad)
        local = local / (F.avg_pool2d(probs, self.window, stride=1, padding=pad) + 1e-8)
        confidence = F.max_pool2d(probs, self.window, stride=1, padding=pad)
        correction = confidence * self.head(F.relu(self.fuse(torch.cat([feats, local], dim=1))))
        return rough + uncertainty(rough) * correction.view(b, k, h, w)
