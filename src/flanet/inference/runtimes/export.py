"""Export of the per-frame step for deployment: ONNX (onnxruntime), TorchScript, torch.export.

Three parts (docs/inference.md):

* ``encoder``: one frame ``image`` (1, 3, S, S) -> per-level features ``f<l>`` of that frame;
* ``decoder``: the features of frames t, t-1, t-2 (inputs ``t0_f<l>``, ``t1_f<l>``, ``t2_f<l>``)
  -> ``mask_logits`` (1, 1, S, S) [, ``heatmap`` (1, 1, S, S)]; with the encoder this is the
  streaming loop of :class:`flanet.inference.VideoSegmenter` (keep the last three feature sets);
* ``step``: the full 3-frame clip ``clip`` (1, 3, 3, S, S), frames current first -> the same outputs.

Image baselines (one frame, no encoder/decoder split) export only ``step`` with a
(1, 1, 3, S, S) clip. Every exported file is reloaded and compared with PyTorch.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from flanet.defaults import IMAGE_SIZE
from flanet.fileio import atomic_path, atomic_write_text
from flanet.models.contract import VideoSegmentationModel
from flanet.models.encoder import check_image_size

__all__ = ["ExportError", "export_model", "export_checkpoint", "run_exported", "FORMATS", "PARTS"]

FORMATS = ("onnx", "torchscript", "torch-export")
#: What to export: the 3-frame ``step``, the ``stream`` parts (encoder + decoder), or ``all``.
PARTS = ("all", "step", "stream")
SUFFIXES = {"onnx": ".onnx", "torchscript": ".ts", "torch-export": ".pt2"}
TOLERANCE = 1e-3  # max |exported - PyTorch| accepted, relative to max(1, max |PyTorch|)
# in half precision both sides round differently (8 / 11 significant bits)
HALF_TOLERANCE = {torch.float16: 1e-2, torch.bfloat16: 5e-2}


class ExportError(RuntimeError):
    """An export failed or its output does not match PyTorch."""


class EncoderStep(nn.Module):
    """``model.encode`` on one frame, features returned as a flat tuple (one per level)."""

    def __init__(self, model: VideoSegmentationModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, ...]:  # (1, 3, S, S)
        return tuple(self.model.encode(image))


class DecoderStep(nn.Module):
    """``model.decode`` from flat per-level features of frames t, t-1, ... (current first)."""

    def __init__(self, model: VideoSegmentationModel, num_levels: int) -> None:
        super().__init__()
        self.model, self.num_levels = model, num_levels

    def forward(self, *features: torch.Tensor) -> tuple[torch.Tensor, ...]:
        frames = [list(features[i : i + self.num_levels]) for i in range(0, len(features), self.num_levels)]
        return _outputs(self.model.decode(frames))


class ClipStep(nn.Module):
    """Full forward on one clip (1, T, 3, S, S), frames current first."""

    def __init__(self, model: VideoSegmentationModel) -> None:
        super().__init__()
        self.model = model

    def forward(self, clip: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return _outputs(self.model(clip))


def _outputs(output: Any) -> tuple[torch.Tensor, ...]:
    """(mask_logits, heatmap) or (mask_logits,) when the model has no localisation branch."""
    return (output.mask_logits,) if output.heatmap is None else (output.mask_logits, output.heatmap)


def _save(module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, fmt: str,
          input_names: list[str], output_names: list[str]) -> None:
    with atomic_path(path) as tmp:  # an interrupted export never leaves a truncated model file
        if fmt == "onnx":
            # one self-contained file (weights inside; fine below protobuf's 2 GB limit)
            torch.onnx.export(module, args, str(tmp), dynamo=True, verbose=False, external_data=False,
                              input_names=input_names, output_names=output_names)
        elif fmt == "torchscript":
            torch.jit.save(torch.jit.trace(module, args), str(tmp))
        else:
            torch.export.save(torch.export.export(module, args), str(tmp))


def run_exported(path: Path, fmt: str, args: Sequence[torch.Tensor]) -> list[np.ndarray]:
    """Load an exported part and run it on ``args``; returns its outputs as numpy arrays."""
    if fmt == "onnx":
        import onnxruntime

        session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        feeds = {i.name: a.numpy() for i, a in zip(session.get_inputs(), args)}
        return [o.astype(np.float32) for o in session.run(None, feeds)]
    module = torch.jit.load(str(path)) if fmt == "torchscript" else torch.export.load(str(path)).module()
    with torch.inference_mode():
        outputs = module(*args)
    return [o.float().numpy() for o in (outputs if isinstance(outputs, (tuple, list)) else [outputs])]


def _export_part(name: str, module: nn.Module, args: tuple[torch.Tensor, ...], path: Path, fmt: str,
                 input_names: list[str], output_names: list[str]) -> dict[str, Any]:
    """Export one part, reload it, compare with PyTorch; returns its manifest entry."""
    module = module.eval()
    with torch.inference_mode():
        expected = [o.float().numpy() for o in module(*args)]
    try:
        _save(module, args, path, fmt, input_names, output_names)
        actual = run_exported(path, fmt, args)
    except Exception as error:  # exporters raise many types; report which part failed
        hint = "" if fmt == "torch-export" else " (try --format torch-export)"
        raise ExportError(f"{path}: exporting the {name} part to {fmt} failed{hint}: {error}") from error
    diff = max(float(np.abs(a - e).max()) for a, e in zip(actual, expected))
    scale = max(1.0, max(float(np.abs(e).max()) for e in expected))
    tolerance = HALF_TOLERANCE.get(args[0].dtype, TOLERANCE) * scale
    if len(actual) != len(expected) or diff > tolerance:
        raise ExportError(f"{path}: exported {name} differs from PyTorch by {diff:.3g} (tolerance {tolerance:.3g})")
    return {
        "name": name, "file": path.name, "max_abs_diff": diff,
        "inputs": {n: list(a.shape) for n, a in zip(input_names, args)},
        "outputs": {n: list(e.shape) for n, e in zip(output_names, expected)},
    }


def export_model(model: VideoSegmentationModel, out: Path, fmt: str = "onnx", image_size: int = IMAGE_SIZE,
                 parts: str = "all", extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export ``model``'s per-frame step(s) next to ``out`` and write ``<out stem>.json``.

    Args:
        model: a flanet model (CPU export; weights copied to CPU, eval mode).
        out: file of the 3-frame step; streaming parts are ``<stem>-encoder<suffix>`` and
            ``<stem>-decoder<suffix>`` in the same folder.
        fmt: "onnx", "torchscript" or "torch-export".
        image_size: fixed input side S.
        parts: "step", "stream" (encoder + decoder) or "all".
        extra: more plain-typed entries for the manifest (e.g. the checkpoint path).

    Returns:
        The manifest (also written as JSON): parts with files, shapes and max |diff|.

    Raises:
        ValueError: unknown format/parts, or a bad image size.
        ExportError: an exporter failure, or outputs that do not match PyTorch.
    """
    if fmt not in FORMATS or parts not in PARTS:
        raise ValueError(f"format must be one of {FORMATS} and parts one of {'/'.join(PARTS)}")
    check_image_size(model, image_size)
    if model.init_state().window is None:
        raise ValueError(f"model {model.config.get('name', type(model).__name__)!r} reads a memory of earlier frames "
                         "beyond a fixed window (its own predictions, an anchor frame), which a fixed-input exported "
                         "decoder cannot hold: it runs with "
                         "backend pytorch only (flanet export writes models that read a fixed window)")
    dtype = next(model.parameters()).dtype
    if fmt == "onnx" and dtype == torch.bfloat16:
        raise ValueError("ONNX has no bfloat16 convolutions (onnxruntime refuses such a graph): export "
                         "float16 (model.half()) or float32 to ONNX, or bfloat16 with format torch-export")
    model = model.cpu().eval()
    out = Path(out).with_suffix(SUFFIXES[fmt]) if not Path(out).suffix else Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    num_frames = model.num_frames
    streamable = num_frames > 1
    generator = torch.Generator().manual_seed(0)
    image = torch.randn(1, 3, image_size, image_size, generator=generator).to(dtype)  # weights' dtype
    with torch.inference_mode():
        has_heatmap = model(image[:, None].expand(1, num_frames, -1, -1, -1)).heatmap is not None
    output_names = ["mask_logits", "heatmap"][: 2 if has_heatmap else 1]
    entries = []
    if parts in ("all", "step") or not streamable:
        clip = torch.randn(1, num_frames, 3, image_size, image_size, generator=generator).to(dtype)
        entries.append(_export_part("step", ClipStep(model), (clip,), out, fmt, ["clip"], output_names))
    if parts in ("all", "stream") and streamable:
        with torch.inference_mode():
            features = [model.encode(torch.randn_like(image)) for _ in range(num_frames)]
        levels = len(features[0])
        feature_names = [f"f{level}" for level in range(levels)]
        encoder_path = out.with_name(f"{out.stem}-encoder{out.suffix}")
        entries.append(_export_part("encoder", EncoderStep(model), (image,), encoder_path, fmt, ["image"], feature_names))
        flat = tuple(f.clone() for frame in features for f in frame)
        names = [f"t{k}_f{level}" for k in range(num_frames) for level in range(levels)]
        decoder_path = out.with_name(f"{out.stem}-decoder{out.suffix}")
        entries.append(_export_part("decoder", DecoderStep(model, levels), flat, decoder_path, fmt, names, output_names))
    from flanet.data.images import input_normalisation

    manifest = {
        "format": fmt, "image_size": image_size, "num_frames": num_frames, "dtype": str(dtype).removeprefix("torch."),
        "frame_order": "current first: [t, t-1, t-2]; at a video's start repeat the first frame",
        "input_normalisation": input_normalisation(),
        "model": model.config, **(extra or {}), "parts": entries,
    }
    atomic_write_text(out.with_suffix(".json"), json.dumps(manifest, indent=2))
    return manifest


def export_checkpoint(checkpoint: str | Path, out: Path, fmt: str = "onnx", image_size: int | None = None,
                      parts: str = "all") -> dict[str, Any]:
    """Load a flanet checkpoint as :meth:`~flanet.inference.VideoSegmenter.from_checkpoint` does
    (:func:`~flanet.models.trained.load_trained`) and :func:`export_model` it, at its training size unless
    ``image_size`` (another size is exported with a warning).

    Raises:
        ValueError: ``out`` (or a file written beside it) is the checkpoint (issue 22 item 3), or the checkpoint
            records an input normalisation flanet does not apply (the manifest states ImageNet's).
    """
    from flanet.models.trained import load_trained

    target, source = Path(out).resolve(), Path(checkpoint).resolve()
    if source in (target, target.with_suffix(".json")) or (
            source.parent == target.parent and source.name.startswith(f"{target.stem}-")):
        raise ValueError(f"{out}: the export would overwrite the checkpoint {checkpoint} it reads; choose another --out")
    trained = load_trained(checkpoint)
    return export_model(trained.loaded.model, out, fmt=fmt, image_size=trained.image_size(image_size), parts=parts,
                        extra={"checkpoint": str(checkpoint)})
