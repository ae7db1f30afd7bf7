"""The named mask losses a recipe chooses with ``loss.mask_loss`` (standard library only: configuration and registry read it).

Each is a set of mask terms of :mod:`flanet.losses.mask`: ``bce`` and ``iou`` (FLA-Net's eq. 2),
``dice``, the pixel-weighted ``wbce`` and ``wiou`` of PraNet's eq. (4), and ``ssim`` (DCFNet).
"""

from __future__ import annotations

from typing import Literal

#: A ``loss.mask_loss`` value.
MaskLossName = Literal["bce-iou", "structure", "wbce-wiou", "bce-dice", "bce", "bce-ssim-iou"]

#: Mask loss name -> its terms, and whose loss it is.
MASK_LOSSES: dict[str, tuple[str, ...]] = {
    "bce-iou": ("bce", "iou"),  # FLA-Net eq. (2), UNet, UNet++
    "structure": ("bce", "wiou"),  # the FLA-Net and PraNet released scripts (their BCE weights cancel)
    "wbce-wiou": ("wbce", "wiou"),  # PraNet's paper, eq. (4)
    "bce-dice": ("bce", "dice"),  # ACSNet, TransUNet
    "bce": ("bce",),  # ResUNet++, SETR (cross-entropy)
    "bce-ssim-iou": ("bce", "ssim", "iou"),  # DCFNet (BASNet's hybrid loss)
}
#: Every mask term a named loss uses.
MASK_TERMS: tuple[str, ...] = ("bce", "iou", "dice", "wbce", "wiou", "ssim")


def mask_loss_of(terms: tuple[str, ...] | list[str]) -> str:
    """The name of the mask loss made of exactly ``terms`` (any order).

    Raises:
        ValueError: no named loss has those terms.
    """
    wanted = set(terms)
    for name, own in MASK_LOSSES.items():
        if set(own) == wanted:
            return name
    raise ValueError(f"no mask loss is made of the terms {sorted(wanted)}; the named ones: "
                     + ", ".join(f"{n} ({' + '.join(t)})" for n, t in MASK_LOSSES.items()))
