"""The model registry, in the way of timm's ``register_model``: ``create_model(name, **options)``.

Every model is a *builder* registered under a name with its own *options* dataclass (a subclass of
:class:`ModelOptions`) and its metadata (:class:`ModelInfo`: image or video, the method's paper,
the rows of FLA-Net's Tables 2-4 it reproduces, its default loss terms, its reference)::

    @dataclass(frozen=True)
    class UNetOptions(ModelOptions):
        ...

    @register_model("unet", UNetOptions, ModelInfo(kind="image", ...))
    def _unet(options: UNetOptions) -> VideoSegmentationModel:
        ...

:func:`create_model` checks the options against the dataclass (an option the model does not
have is an error naming it), builds the model and records ``{"name", "options"}`` in
``model.config`` so :func:`rebuild_model` (and checkpoints) make it again. The package's own
models live in :data:`BUILTIN_MODULES`; other packages add theirs through the entry point group
:data:`ENTRY_POINT_GROUP` (docs/model.md). Standard library only: torch is imported by the
builders, when a model is built.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import importlib
import logging
import os
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib import metadata
from typing import TYPE_CHECKING, Any, Literal, TypeVar

from flanet.losses.names import MASK_TERMS, mask_loss_of
from flanet.models.defaults import DEFAULT_ENCODER
from flanet.typedvalues import WRONG, convert, describe_type

if TYPE_CHECKING:
    from flanet.models.contract import VideoSegmentationModel

log = logging.getLogger(__name__)

#: Entry point group through which other packages register models (docs/model.md).
ENTRY_POINT_GROUP = "flanet.models"
#: Modules of this package whose import registers its models, in the order ``flanet models`` lists them.
BUILTIN_MODULES: tuple[str, ...] = (
    "flanet.models.variants", "flanet.models.baselines", "flanet.models.authors",
    "flanet.models.image_methods.resunetplusplus", "flanet.models.image_methods.acsnet",
    "flanet.models.image_methods.pranet", "flanet.models.image_methods.transunet",
    "flanet.models.image_methods.setr", "flanet.models.video_methods.pnsnet", "flanet.models.video_methods.stm",
    "flanet.models.video_methods.afburr",
    "flanet.models.video_methods.pnsplus", "flanet.models.video_methods.dpstt", "flanet.models.video_methods.dcfnet",
)
#: Loss terms of FLA-Net's eq. (2): mask BCE and IoU, heatmap MSE, and the contrastive loss of eq. (1).
EQ2_TERMS: tuple[str, ...] = ("bce", "iou", "heatmap", "contrastive")


class ModelError(ValueError):
    """An unknown model, an option a model does not have, or an option value of the wrong type."""


@dataclass(frozen=True)
class ModelOptions:
    """Options every model has; a model's own options dataclass subclasses this one.

    Attributes:
        encoder: timm name of the per-frame encoder (the paper: Res2Net-50).
        encoder_weights: ``"imagenet"`` (timm's pretrained weights), a local ``.pth`` /
            ``.safetensors`` state dict, or None (random). Not stored in ``model.config``:
            trained weights travel in checkpoints.
    """

    encoder: str = DEFAULT_ENCODER
    encoder_weights: str | None = None


@dataclass(frozen=True)
class PaperRow:
    """A row of one of FLA-Net's tables (Table 2: BUV, Table 3: ablation, Table 4: video polyps)."""

    table: int
    label: str

    def __str__(self) -> str:
        return f"Table {self.table} '{self.label}'"


@dataclass(frozen=True)
class ModelInfo:
    """What a registered model is.

    Attributes:
        kind: ``"image"`` (segments each frame alone) or ``"video"`` (reads previous frames).
        description: one line for ``flanet models``.
        paper: the paper that defines the method (authors, venue, year).
        rows: the rows of FLA-Net's tables the model reproduces (empty: none).
        reference: what the implementation follows (paper sections, public code read as a reference).
        loss_terms: the loss terms the model trains with by default (:data:`EQ2_TERMS` names
            eq. 2's; only ``flanet`` has ``"contrastive"``, eq. 1); its mask terms are those of one
            named mask loss (:data:`flanet.losses.names.MASK_LOSSES`, e.g. PraNet's ``wbce``, ``wiou``).
        encoders: ``fnmatch`` patterns of the timm encoders the model can use (e.g. ``("vit_*",)``
            for a plain ViT); empty: any timm model with ``features_only``.
        side_weight: weight of each deep-supervision side output's loss by default (PraNet,
            ACSNet 1, SETR's auxiliary heads 0.4); 0 for a model without side outputs.
    """

    kind: Literal["image", "video"]
    description: str
    paper: str
    rows: tuple[PaperRow, ...] = ()
    reference: str = ""
    loss_terms: tuple[str, ...] = ("bce", "iou")
    encoders: tuple[str, ...] = ()
    side_weight: float = 0.0


OptionsT = TypeVar("OptionsT", bound=ModelOptions)
Builder = Callable[[Any], "VideoSegmentationModel"]


@dataclass(frozen=True)
class ModelSpec:
    """A registered model: its name, builder, options dataclass, metadata and registering module."""

    name: str
    builder: Builder
    options: type[ModelOptions]
    info: ModelInfo
    source: str

    @property
    def option_names(self) -> tuple[str, ...]:
        """The keyword arguments :func:`create_model` takes for this model."""
        return tuple(f.name for f in dataclasses.fields(self.options))

    @property
    def default_encoder(self) -> str:
        """The encoder the model uses unless told otherwise."""
        return self.options().encoder

    def accepts_encoder(self, encoder: str) -> bool:
        """Whether the model can be built on timm encoder ``encoder`` (:attr:`ModelInfo.encoders`)."""
        patterns = self.info.encoders
        return not patterns or any(fnmatch.fnmatchcase(encoder, p) for p in patterns)

    def row(self, table: int) -> PaperRow | None:
        """The model's row in FLA-Net's Table ``table``, or None."""
        return next((r for r in self.info.rows if r.table == table), None)


_REGISTRY: dict[str, ModelSpec] = {}
_loaded = False


def register_model(name: str, options: type[OptionsT], info: ModelInfo) -> Callable[[Callable[[OptionsT], Any]], Callable[[OptionsT], Any]]:
    """Decorator registering ``builder(options) -> VideoSegmentationModel`` as model ``name``.

    Args:
        name: the name :func:`create_model` and recipes (``model.name``) use; lower case.
        options: the model's frozen options dataclass, a subclass of :class:`ModelOptions`.
        info: the model's metadata.

    Raises:
        ModelError: ``name`` is taken by another builder, or ``options`` is not a
            :class:`ModelOptions` dataclass.
    """
    if not (isinstance(options, type) and issubclass(options, ModelOptions) and dataclasses.is_dataclass(options)):
        raise ModelError(f"model {name!r}: options must be a dataclass subclassing ModelOptions, got {options!r}")
    if info.kind not in ("image", "video"):
        raise ModelError(f"model {name!r}: kind must be 'image' or 'video', got {info.kind!r}")

    def decorate(builder: Callable[[OptionsT], Any]) -> Callable[[OptionsT], Any]:
        source = f"{builder.__module__}.{builder.__qualname__}"
        known = _REGISTRY.get(name)
        if known is not None and known.source != source:
            raise ModelError(f"model {name!r} is registered twice ({known.source} and {source})")
        _REGISTRY[name] = ModelSpec(name, builder, options, info, source)
        return builder

    return decorate


def _load() -> None:
    """Imports the built-in model modules, then the ``flanet.models`` entry points (once)."""
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    for entry in metadata.entry_points(group=ENTRY_POINT_GROUP):
        before = dict(_REGISTRY)
        try:
            loaded = entry.load()
            if callable(loaded) and not isinstance(loaded, type):
                loaded()
        except Exception as error:  # a broken plug-in (or one taking a registered name) is named and skipped
            _REGISTRY.clear()
            _REGISTRY.update(before)
            log.warning("flanet.models entry point %r (%s) failed to load and is skipped: %s", entry.name, entry.value, error)


def list_models(kind: str | None = None, table: int | None = None) -> list[str]:
    """Registered model names: built-in ones in :data:`BUILTIN_MODULES` order, then the others, each in registration order.

    Args:
        kind: only ``"image"`` or ``"video"`` models.
        table: only models with a row in FLA-Net's Table ``table`` (2, 3 or 4).
    """
    _load()
    order = {module: rank for rank, module in enumerate(BUILTIN_MODULES)}
    specs = sorted(_REGISTRY.values(), key=lambda spec: order.get(spec.builder.__module__, len(order)))  # stable
    return [spec.name for spec in specs
            if (kind is None or spec.info.kind == kind) and (table is None or spec.row(table) is not None)]


def model_spec(name: str) -> ModelSpec:
    """The registered model ``name``.

    Raises:
        ModelError: no such model (the message suggests the closest name and lists them all).
    """
    _load()
    spec = _REGISTRY.get(name)
    if spec is None:
        close = difflib.get_close_matches(str(name), list(_REGISTRY), n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ModelError(f"unknown model {name!r}{hint}; choose one of {', '.join(_REGISTRY)}")
    return spec


def model_options(name: str, **options: Any) -> ModelOptions:
    """The options dataclass of model ``name`` with ``options`` set, each checked against its type.

    Raises:
        ModelError: unknown model, an option the model does not have (named, with the closest
            one), or a value of the wrong type.
    """
    spec = model_spec(name)
    names = spec.option_names
    hints = typing.get_type_hints(spec.options)
    values: dict[str, Any] = {}
    for key, value in options.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ModelError(f"model {name!r} has no option {key!r}{hint}; its options: {', '.join(names)}")
        if isinstance(value, os.PathLike):
            value = os.fspath(value)
        converted = convert(value, hints[key])
        if converted is WRONG:
            raise ModelError(f"model {name!r} option {key!r} expects {describe_type(hints[key])}, got {value!r}")
        values[key] = converted
    return spec.options(**values)


def create_model(name: str, **options: Any) -> VideoSegmentationModel:
    """Builds registered model ``name`` (see :func:`list_models`, ``flanet models``).

    Args:
        name: a registered name, e.g. ``flanet``, ``flanet-basic``, ``unet``.
        **options: fields of the model's options dataclass (``encoder``, ``encoder_weights`` and
            the model's own, docs/model.md).

    Returns:
        The model; ``model.config`` is ``{"name": name, "options": {...}}`` with every option
        (``encoder_weights`` None: trained weights travel in checkpoints), which
        :func:`rebuild_model` builds again.

    Raises:
        ModelError: unknown model, option or option type.
        ValueError: option values the builder refuses (e.g. FLA-Net's ``mask_stride=3``).
    """
    chosen = model_options(name, **options)
    spec = model_spec(name)
    if not spec.accepts_encoder(chosen.encoder):
        raise ModelError(f"model {name!r} cannot use encoder {chosen.encoder!r}: it needs one of "
                         f"{', '.join(spec.info.encoders)} (its default: {spec.default_encoder})")
    model = spec.builder(chosen)
    model.config = {"name": name, "options": dataclasses.asdict(dataclasses.replace(chosen, encoder_weights=None))}
    return model


def rebuild_model(config: Mapping[str, Any]) -> VideoSegmentationModel:
    """``create_model(config["name"], **config["options"])``: a model from its ``model.config``."""
    if not isinstance(config, Mapping) or "name" not in config or not isinstance(config.get("options", {}), Mapping):
        raise ModelError(f"a model configuration is {{'name': ..., 'options': {{...}}}}, got {config!r}")
    return create_model(str(config["name"]), **dict(config.get("options", {})))


def default_mask_loss(name: str) -> str:
    """The named mask loss (:data:`flanet.losses.names.MASK_LOSSES`) model ``name`` trains with by default.

    ``bce-iou`` (eq. 2) for FLA-Net and UNet; the one made of a compared method's mask terms otherwise
    (PraNet: ``wbce-wiou``).
    """
    terms = [term for term in model_spec(name).info.loss_terms if term in MASK_TERMS]
    return mask_loss_of(terms)


def default_side_weight(name: str) -> float:
    """Weight of each side output's loss model ``name`` trains with by default (:attr:`ModelInfo.side_weight`)."""
    return model_spec(name).info.side_weight


def default_contrastive_weight(name: str) -> float:
    """Weight of eq. (1) model ``name`` trains with unless the configuration sets one.

    1 for a model whose default loss terms include ``"contrastive"`` (only ``flanet``, the paper's
    full method, weight 1 in eq. 2), else 0.
    """
    return 1.0 if "contrastive" in model_spec(name).info.loss_terms else 0.0
