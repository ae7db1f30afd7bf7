"""INT8 exports for the CPU: post-training static quantization calibrated on the user's frames.

The float32 streaming parts (:mod:`flanet.inference.runtimes.export`: the per-frame ``encoder`` and the
``decoder`` of the window ``[t, t-1, t-2]``, paper Sec. 3, Fig. 2; an image baseline's ``step``) are
quantized for one runtime:

* ``onnxruntime``: :func:`onnxruntime.quantization.quantize_static`, QDQ format, weights int8 per output
  channel, activations uint8 with ``reduce_range`` (7-bit weights: no saturation of the uint8 x int8
  products on CPUs without VNNI instructions), MinMax ranges;
* ``openvino``: NNCF's :func:`nncf.quantize` on the OpenVINO model (performance preset, fast bias
  correction), saved as OpenVINO IR (``.xml`` + ``.bin``). A quantized part OpenVINO's CPU plugin then
  cannot compile (2026.4 refuses the FFA decoder's quantized reshape) stays float32; the manifest's
  ``quantization.int8_parts`` names the parts that are INT8.

Activation ranges come from the user's frames (:mod:`flanet.inference.runtimes.calibration`). The
quantized model is then checked: held-out videos are streamed through the float32 and the INT8 parts and
their Dice compared (:func:`~flanet.inference.runtimes.calibration.held_out_dice`); the result is stored
in the manifest (``quantization``), and a model whose drop exceeds ``max_dice_drop`` is refused
(:class:`QuantizationRefused`, nothing written).
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flanet.fileio import atomic_write_text, staged_folder, umask_mode
from flanet.inference.runtimes.base import RuntimeOptions
from flanet.inference.runtimes.calibration import (
    CalibrationVideo,
    HeldOutDice,
    calibration_inputs,
    held_out_dice,
    read_videos,
    split_held_out,
)
from flanet.inference.runtimes.export import ExportError
from flanet.inference.runtimes.exported import ExportedRunner, export_for_onnxruntime, read_export_manifest
from flanet.models.contract import VideoSegmentationModel
from flanet.models.windows import CausalWindows

__all__ = ["PRECISIONS", "QUANTIZED_RUNTIMES", "QuantizationRefused", "quantize_export", "quantized_for",
           "DEFAULT_MAX_DICE_DROP"]

#: ``--precision`` choices.
PRECISIONS: tuple[str, ...] = ("float32", "int8")
#: Runtimes an INT8 export is made for (``--backend`` of ``flanet predict``).
QUANTIZED_RUNTIMES: tuple[str, ...] = ("onnxruntime", "openvino")
#: Default ``--max-dice-drop``: the project's target (docs/benchmarks.md).
DEFAULT_MAX_DICE_DROP = 0.01
DEFAULT_CALIBRATION_FRAMES = 64
log = logging.getLogger(__name__)


class QuantizationRefused(ExportError):
    """The INT8 model lost more Dice on the held-out videos than allowed; nothing was written."""


class _Feeds:
    """Re-iterable calibration feeds of one part (NNCF iterates more than once; onnxruntime once)."""

    def __init__(self, make: Any) -> None:
        self.make = make

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.make())


def _part_feeds(part: str, videos: list[list[np.ndarray]], float_runner: ExportedRunner, num_frames: int) -> _Feeds:
    """Calibration inputs of ``part``: frames (encoder), windows of float32 features (decoder) or clips (step)."""
    def frames() -> Iterator[dict[str, np.ndarray]]:
        for video in videos:
            yield from ({"image": image} for image in video)

    def windows() -> Iterator[dict[str, np.ndarray]]:
        for video in videos:
            causal = CausalWindows(num_frames)
            for image in video:
                levels = causal.push(float_runner.per_frame_state(torch.from_numpy(image)))
                yield {f"t{k}_f{level}": np.ascontiguousarray(window[:, k].numpy())
                       for level, window in enumerate(levels) for k in range(num_frames)}

    def clips() -> Iterator[dict[str, np.ndarray]]:
        for video in videos:
            causal = CausalWindows(num_frames)
            for image in video:
                (window,) = causal.push([torch.from_numpy(image)])  # (1, T, 3, S, S)
                yield {"clip": np.ascontiguousarray(window.numpy())}

    return _Feeds({"encoder": frames, "decoder": windows, "step": clips}[part])


@contextmanager
def _quiet(names: Sequence[str]) -> Iterator[None]:
    """Silence the quantizers' advice (logged on the root logger by onnxruntime) while they run."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _quantize_onnxruntime(source: Path, target: Path, feeds: _Feeds) -> list[str]:
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.items = iter(feeds)

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    with _quiet(["", "onnxruntime"]):
        quantize_static(str(source), str(target), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        reduce_range=True, activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)  # MinMax keeps per-input minima and maxima only
    return [target.name]


def _quantize_openvino(source: Path, target: Path, feeds: _Feeds, count: int) -> list[str]:
    try:
        import nncf
        import openvino
    except ImportError as error:
        raise ValueError("INT8 for OpenVINO needs the nncf and openvino packages: pip install 'flanet[export]'") from error
    model = openvino.Core().read_model(str(source))
    with _quiet(["nncf"]):
        quantized = nncf.quantize(model, nncf.Dataset(feeds), preset=nncf.QuantizationPreset.PERFORMANCE,
                                  subset_size=max(1, count), fast_bias_correction=True)
    xml = target.with_suffix(".xml")
    openvino.save_model(quantized, str(xml), compress_to_fp16=False)
    try:
        openvino.Core().compile_model(str(xml), "CPU")
    except RuntimeError as error:  # OpenVINO 2026.4's CPU plugin refuses NNCF's FakeQuantize before a Reshape
        xml.unlink()                # in the FFA decoder ("Requested output shape ... is incompatible")
        xml.with_suffix(".bin").unlink()
        shutil.copyfile(source, target)
        log.warning("%s: OpenVINO's CPU plugin cannot compile the INT8 %s (%s); it stays float32",
                    source.name, source.stem, str(error).strip().splitlines()[-1][:200])
        return [target.name]
    return [xml.name, xml.with_suffix(".bin").name]


def _open(runtime: str, manifest: Path) -> ExportedRunner:
    if runtime == "openvino":
        from flanet.inference.runtimes.openvino_runner import OpenVinoRunner

        return OpenVinoRunner(manifest)
    from flanet.inference.runtimes.onnxruntime_runner import OnnxRunner

    return OnnxRunner(manifest, providers=["CPUExecutionProvider"])


def quantize_export(float_manifest: str | Path, out: str | Path, runtime: str, calibration: Sequence[CalibrationVideo],
                    held_out: Sequence[CalibrationVideo], max_dice_drop: float | None = DEFAULT_MAX_DICE_DROP,
                    frames: int = DEFAULT_CALIBRATION_FRAMES, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Quantize the streaming parts of a float32 ONNX export for ``runtime`` and check them on ``held_out``.

    Args:
        float_manifest: manifest of a float32 ONNX export (``parts`` stream, or step for an image baseline).
        out: file name of the INT8 export (``<stem>.json`` is its manifest; parts are ``<stem>-<part>`` beside it).
        runtime: ``"onnxruntime"`` or ``"openvino"``.
        calibration: videos whose frames fix the activation ranges.
        held_out: other videos, streamed through both models for the Dice check.
        max_dice_drop: refuse the model when its Dice drop (against the ground truth where the held-out
            frames have masks, else ``1 -`` the Dice between the INT8 and the float32 masks) exceeds this;
            None: record it only.
        frames: calibration frames in all (consecutive frames from each calibration video's start).
        extra: more plain-typed manifest entries.

    Returns:
        The manifest written to ``<out stem>.json``.

    Raises:
        QuantizationRefused: the measured drop exceeds ``max_dice_drop`` (a failed run; nothing written).
        ValueError: an unknown runtime, or a float manifest that is not a float32 ONNX export.
    """
    if runtime not in QUANTIZED_RUNTIMES:
        raise ValueError(f"INT8 runtime {runtime!r}: expected one of {', '.join(QUANTIZED_RUNTIMES)}")
    float_manifest, out = Path(float_manifest), Path(out)
    source = json.loads(float_manifest.read_text(encoding="utf-8"))
    if source.get("format") != "onnx" or source.get("dtype", "float32") != "float32" or source.get("precision", "float32") != "float32":
        raise ValueError(f"{float_manifest}: INT8 quantization starts from a float32 ONNX export")
    parts = read_export_manifest(float_manifest)
    names = ("encoder", "decoder") if parts.streaming else ("step",)
    float_runner = _open("onnxruntime", float_manifest)  # the calibration features come from the float32 encoder
    videos = calibration_inputs(calibration, parts.image_size, frames)
    count = sum(len(v) for v in videos)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".int8-", dir=out.parent))
    staging.chmod(umask_mode(0o777))
    try:
        entries = []
        for name in names:
            feeds = _part_feeds(name, videos, float_runner, parts.num_frames)
            target = staging / f"{out.stem}-{name}.onnx"
            files = (_quantize_openvino(parts.file(name), target, feeds, count) if runtime == "openvino"
                     else _quantize_onnxruntime(parts.file(name), target, feeds))
            entry = next(p for p in source["parts"] if p["name"] == name)
            quantized = files[0].endswith(".xml") or runtime == "onnxruntime"
            entries.append({**entry, "file": files[0], "files": files, "max_abs_diff": None,
                            "precision": "int8" if quantized else "float32"})
        manifest = {**source, **(extra or {}), "precision": "int8", "runtime": runtime, "parts": entries}
        atomic_write_text(staging / f"{out.stem}.json", json.dumps(manifest, indent=2))
        check = held_out_dice(float_runner, _open(runtime, staging / f"{out.stem}.json"), held_out,
                              parts.image_size, parts.num_frames)
        manifest["quantization"] = _record(runtime, calibration, count, held_out, check, max_dice_drop, entries)
        if max_dice_drop is not None and check.checked_drop > max_dice_drop:
            what = "Dice drop" if check.dice_drop is not None else "1 - Dice(INT8 masks, float32 masks)"
            raise QuantizationRefused(
                f"{out}: the INT8 model's {what} on {check.videos} held-out video(s) is {check.checked_drop:.4f}, "
                f"above --max-dice-drop {max_dice_drop:g}; nothing written (more or other calibration frames, "
                "--runtime, or float32)")
        atomic_write_text(staging / f"{out.stem}.json", json.dumps(manifest, indent=2))
        for entry in entries:  # parts first, the manifest last: an interrupted move never looks finished
            for file in entry["files"]:
                (staging / file).replace(out.parent / file)
        (staging / f"{out.stem}.json").replace(out.with_suffix(".json"))
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _record(runtime: str, calibration: Sequence[CalibrationVideo], frames: int, held_out: Sequence[CalibrationVideo],
            check: HeldOutDice, limit: float | None, entries: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The manifest's ``quantization`` entry: how the model was made and what it lost."""
    method = ("onnxruntime quantize_static: QDQ, weights int8 per channel (reduce_range), activations uint8, MinMax"
              if runtime == "onnxruntime" else "NNCF quantize: performance preset, fast bias correction, OpenVINO IR")
    return {
        "method": method, "calibration_videos": [v.name for v in calibration], "calibration_frames": frames,
        "held_out_videos": [v.name for v in held_out], **asdict(check), "checked_drop": check.checked_drop,
        "int8_parts": [entry["name"] for entry in entries if entry["precision"] == "int8"],
        "max_dice_drop": limit,
        "dice_at": "the model's input resolution, threshold 0.5, mean over frames, streamed causally",
    }


def _describe(paths: Sequence[str]) -> list[str]:
    """Each calibration path with its size and modification time: a changed file makes a new cache entry."""
    described = []
    for given in paths:
        path = Path(given).resolve()
        stat = path.stat()
        described.append(f"{path}|{stat.st_size}|{stat.st_mtime_ns}")
    return described


def quantized_for(model: VideoSegmentationModel, image_size: int, options: RuntimeOptions) -> Path:
    """The INT8 export of ``model`` for ``options.backend``, calibrated on ``options.calibration`` (cached).

    Two thirds of the calibration videos calibrate, the other third (by video) is the held-out Dice
    check; the export is cached beside the float32 one, keyed by it, the backend, the calibration paths
    (with their sizes and times) and ``options.max_dice_drop``.

    Raises:
        ValueError: no calibration frames were given.
        QuantizationRefused: the held-out Dice drop exceeds ``options.max_dice_drop``.
    """
    import hashlib

    if not options.calibration:
        raise ValueError("precision int8 needs the user's frames to calibrate on (--calibration DATA_ROOT or "
                         "VIDEO ...) or an INT8 export (--exported MANIFEST of flanet export --precision int8)")
    float_manifest = export_for_onnxruntime(model, image_size)
    text = json.dumps([float_manifest.parent.name, options.backend, _describe(options.calibration),
                       options.max_dice_drop, DEFAULT_CALIBRATION_FRAMES])
    folder = float_manifest.parent.parent / f"int8-{hashlib.sha256(text.encode()).hexdigest()[:24]}"
    manifest = folder / "flanet.json"
    if manifest.is_file():
        return manifest
    calibration, held_out = split_held_out(read_videos(options.calibration))
    with staged_folder(folder, prefix=".int8-") as staging:
        quantize_export(float_manifest, staging / "flanet.onnx", options.backend, calibration, held_out,
                        options.max_dice_drop)
    return manifest
