"""The image comparison methods of FLA-Net's Tables 2 and 4, reimplemented from their papers.

Each is a :class:`~flanet.models.contract.VideoSegmentationModel` that segments the current frame
alone, built from its options dataclass; :data:`IMAGE_METHODS` holds, per name, the options
class, the model class, the paper and table row it reproduces, and its own training loss.

>>> from flanet.models.image_methods import create_image_method
>>> model = create_image_method("pranet", encoder="resnet18")
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from typing import Any

from flanet.models.image_methods.acsnet import ACSNet, ACSNetOptions
from flanet.models.image_methods.base import ImageMethod
from flanet.models.image_methods.pranet import PraNet, PraNetOptions
from flanet.models.image_methods.resunetplusplus import ResUNetPlusPlus, ResUNetPlusPlusOptions
from flanet.models.image_methods.setr import SETR, SETROptions
from flanet.models.image_methods.transunet import TransUNet, TransUNetOptions


@dataclass(frozen=True)
class ImageMethodEntry:
    """One image method.

    Attributes:
        options: its options dataclass.
        model: its model class, built as ``model(options)``.
        table: the FLA-Net table (2 or 4) and the row label it reproduces.
        paper: the paper that defines it.
        loss_terms: its own training loss, names of :data:`flanet.losses.MASK_TERMS` (a recipe's ``loss.mask_terms``).
        side_weight: weight of each deep-supervision side loss (0 without side outputs).
    """

    options: type
    model: type[ImageMethod]
    table: tuple[int, str]
    paper: str
    loss_terms: tuple[str, ...]
    side_weight: float


IMAGE_METHODS: dict[str, ImageMethodEntry] = {
    "resunetplusplus": ImageMethodEntry(
        ResUNetPlusPlusOptions, ResUNetPlusPlus, (4, "ResUNet"),
        "Jha et al., ResUNet++: An Advanced Architecture for Medical Image Segmentation, IEEE ISM 2019", ("bce",), 0.0),
    "acsnet": ImageMethodEntry(
        ACSNetOptions, ACSNet, (4, "ACSNet"),
        "Zhang et al., Adaptive Context Selection for Polyp Segmentation, MICCAI 2020", ("bce", "dice"), 1.0),
    "pranet": ImageMethodEntry(
        PraNetOptions, PraNet, (4, "PraNet"),
        "Fan et al., PraNet: Parallel Reverse Attention Network for Polyp Segmentation, MICCAI 2020", ("wbce", "wiou"), 1.0),
    "transunet": ImageMethodEntry(
        TransUNetOptions, TransUNet, (2, "TransUNet"),
        "Chen et al., TransUNet: Transformers Make Strong Encoders for Medical Image Segmentation, arXiv 2021",
        ("bce", "dice"), 0.0),
    "setr": ImageMethodEntry(
        SETROptions, SETR, (2, "SETR"),
        "Zheng et al., Rethinking Semantic Segmentation from a Sequence-to-Sequence Perspective with "
        "Transformers, CVPR 2021", ("bce",), 0.4),
}


def image_method_options(name: str, **options: Any) -> Any:
    """The options dataclass of method ``name`` from keyword values (lists become tuples where typed so).

    Raises:
        ValueError: unknown method.
        TypeError: an option the method does not have (naming it and the ones it has).
    """
    if name not in IMAGE_METHODS:
        raise ValueError(f"unknown image method {name!r}; choose one of {', '.join(IMAGE_METHODS)}")
    cls = IMAGE_METHODS[name].options
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise TypeError(f"{name} has no option {', '.join(unknown)} (its options: {', '.join(sorted(fields))})")
    hints = typing.get_type_hints(cls)
    converted = {
        key: tuple(value) if isinstance(value, list) and _is_tuple(hints[key]) else value
        for key, value in options.items()
    }
    return cls(**converted)


def _is_tuple(hint: Any) -> bool:
    return typing.get_origin(hint) is tuple or any(typing.get_origin(a) is tuple for a in typing.get_args(hint))


def create_image_method(name: str, **options: Any) -> ImageMethod:
    """Builds image method ``name`` (``model.config`` rebuilds it: ``create_image_method(**model.config)``)."""
    return IMAGE_METHODS[name].model(image_method_options(name, **options))


__all__ = ["IMAGE_METHODS", "ImageMethod", "ImageMethodEntry", "create_image_method", "image_method_options"]
