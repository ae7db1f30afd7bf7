"""Exported parts, runtime-neutral: the manifest, the export cache and the :class:`ExportedRunner` base.

The streaming loop is the one of the PyTorch backend (paper, Sec. 3, Fig. 2: frame t is predicted from
``[I_t, I_{t-1}, I_{t-2}]``): each frame goes once through the exported ``encoder`` part, its
per-level features are kept in the segmenter's ring buffer, and the exported ``decoder`` part
predicts from the last three feature sets (:mod:`flanet.inference.runtimes.export`). Image baselines run
their exported ``step``. A runtime (:mod:`~flanet.inference.runtimes.onnxruntime_runner`,
:mod:`~flanet.inference.runtimes.openvino_runner`) subclasses :class:`ExportedRunner` and runs one part.

Exported files are cached under ``$FLANET_CACHE_DIR/onnx`` (default ``~/.cache/flanet/onnx``),
keyed by the SHA-256 of the weights, the input size, the torch/flanet versions and the source of the
code that defines the exported graph (:func:`model_code_digest`: a checkout whose model code changed
within one version never reuses a stale graph), so a model is exported (and checked against PyTorch)
once and later runs start at once.
"""

from __future__ import annotations

import abc
import hashlib
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from flanet.devices import resolve_device
from flanet.inference.runtimes.base import Runner, RuntimeOptions
from flanet.models.contract import VideoSegmentationModel

__all__ = ["ExportedParts", "ExportedRunner", "onnx_cache_dir", "export_for_onnxruntime", "model_code_digest",
           "read_export_manifest"]



def onnx_cache_dir() -> Path:
    """Folder of cached exports: ``$FLANET_CACHE_DIR/onnx``, default ``~/.cache/flanet/onnx``."""
    root = os.environ.get("FLANET_CACHE_DIR") or Path.home() / ".cache" / "flanet"
    return Path(root) / "onnx"


#: Sources, relative to the flanet package, whose code becomes the exported graph.
GRAPH_SOURCES = ("models/**/*.py", "inference/runtimes/export.py")  # models in subpackages too
PACKAGE_DIR = Path(__file__).resolve().parents[2]  # the flanet package


def model_code_digest(package: Path = PACKAGE_DIR) -> str:
    """SHA-256 over the sources of :data:`GRAPH_SOURCES` under ``package`` (names and bytes, sorted)."""
    digest = hashlib.sha256()
    for path in sorted(p for pattern in GRAPH_SOURCES for p in package.glob(pattern)):
        digest.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _cache_key(model: VideoSegmentationModel, image_size: int) -> str:
    from flanet import __version__
    from flanet.models.checkpoint import state_digest

    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    text = f"{state_digest(state)}|{image_size}|{torch.__version__}|{__version__}|{model_code_digest()}"
    return hashlib.sha256(text.encode()).hexdigest()[:24]


def export_for_onnxruntime(model: VideoSegmentationModel, image_size: int, cache_dir: Path | None = None) -> Path:
    """Export ``model`` for this backend (or reuse a cached export); returns the manifest path.

    The export is written to a temporary folder and renamed into the cache when complete, so an
    interrupted export never looks finished. ``model`` is not modified (a CPU copy is exported).
    """
    import copy

    from flanet.fileio import staged_folder
    from flanet.inference.runtimes.export import export_model

    cache = Path(cache_dir) if cache_dir is not None else onnx_cache_dir()
    folder = cache / _cache_key(model, image_size)
    manifest = folder / "flanet.json"
    if manifest.is_file():
        return manifest
    with staged_folder(folder, prefix=".export-") as staging:
        cpu_model = copy.deepcopy(model).cpu().float().eval()
        streamable = model.num_frames > 1
        export_model(cpu_model, staging / "flanet.onnx", "onnx", image_size,
                     parts="stream" if streamable else "step")
    return manifest


@dataclass(frozen=True)
class ExportedParts:
    """What a manifest (``flanet.json``) of exported parts says.

    Attributes:
        files: path of each part by name (``encoder``, ``decoder``, ``step``).
        image_size: the fixed input size S of the export.
        num_frames: T of the exported model.
        input_dtype: dtype the parts take (float16 exports take float16).
        streaming: whether there is an encoder + decoder (features reused); else a ``step``.
        precision: ``"float32"`` (or the weights' float dtype) or ``"int8"`` (``flanet export --precision int8``).
        runtime: the runtime an INT8 export was quantized for (``onnxruntime``, ``openvino``); None for float.
    """

    files: dict[str, Path]
    image_size: int
    num_frames: int
    input_dtype: np.dtype
    streaming: bool
    precision: str = "float32"
    runtime: str | None = None

    def file(self, name: str) -> Path:
        """Path of part ``name``; raises ``FileNotFoundError`` when it is missing."""
        if not self.files[name].is_file():
            raise FileNotFoundError(f"{self.files[name]}: exported {name} part is missing")
        return self.files[name]


def read_export_manifest(manifest: str | Path) -> ExportedParts:
    """Reads the manifest of ``flanet export`` / :func:`export_for_onnxruntime`.

    Raises:
        FileNotFoundError: the manifest is missing.
        ValueError: it names neither an encoder + decoder nor a step part.
    """
    manifest = Path(manifest)
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest}: export manifest does not exist")
    data = json.loads(manifest.read_text(encoding="utf-8"))
    files = {p["name"]: manifest.parent / p["file"] for p in data["parts"]}
    streaming = "encoder" in files and "decoder" in files
    if not streaming and "step" not in files:
        raise ValueError(f"{manifest}: no encoder + decoder or step part to run")
    return ExportedParts(files, int(data["image_size"]), int(data["num_frames"]),
                         np.dtype(data.get("dtype", "float32")), streaming, str(data.get("precision", "float32")),
                         data.get("runtime"))


class ExportedRunner(Runner):
    """A runtime that runs exported parts (:class:`~flanet.inference.runtimes.base.Runner` on host arrays).

    Subclasses load the parts of ``parts`` into their runtime (:meth:`open`) and implement :meth:`_run`;
    the feeds (``image``; ``t{k}_f{level}`` for frame k of the window and encoder level; ``clip``) and
    outputs are those of :mod:`flanet.inference.runtimes.export` for every runtime. Frames are prepared
    on the CPU in float32 and cast to the parts' dtype (float16 exports take float16).

    Args:
        parts: the manifest's contents (:func:`read_export_manifest`).
    """

    device = torch.device("cpu")  # inputs and outputs of the parts are host arrays

    #: The runtime this class is (the ``backend`` name), for the INT8 exports made for one runtime.
    runtime: str = ""

    def __init__(self, parts: ExportedParts) -> None:
        if parts.runtime is not None and parts.runtime != self.runtime:
            raise ValueError(f"{parts.files[next(iter(parts.files))]}: an INT8 export for {parts.runtime}, not for "
                             f"{self.runtime}; export it with --runtime {self.runtime}")
        self.image_size, self.num_frames, self.streaming = parts.image_size, parts.num_frames, parts.streaming
        self.part_dtype, self.precision = parts.input_dtype, parts.precision
        self.has_heatmap = False  # set by subclasses from the last part's outputs

    @classmethod
    def create(cls, model: VideoSegmentationModel, image_size: int, options: RuntimeOptions) -> ExportedRunner:
        """Export ``model`` at ``image_size`` once (cached; or take ``options.onnx``) and open the parts.

        Raises:
            ValueError: ``compile``, whole clips (``reuse_features=False``) of a FLA-Net model, an option the
                runtime refuses (:meth:`check`), or an export made for another image size.
        """
        if options.compiled:
            raise ValueError("compile applies to backend pytorch only")
        if options.frames_in_flight < 1:
            raise ValueError(f"frames_in_flight {options.frames_in_flight}: must be >= 1")
        if options.device is not None:
            resolve_device(options.device)  # refuses CUDA without a GPU
        cls.check(options)
        if options.precision == "int8":
            from flanet.inference.runtimes.quantize import quantized_for

            manifest = options.onnx or quantized_for(model, image_size, options)
        else:
            manifest = options.onnx or export_for_onnxruntime(model, image_size)
        runner = cls.open(manifest, options)
        if runner.precision != options.precision:
            raise ValueError(f"{manifest}: a {runner.precision} export, but precision {options.precision} was asked for")
        if runner.image_size != image_size:
            raise ValueError(f"{manifest}: exported for image size {runner.image_size}, not {image_size}")
        if runner.streaming != (options.reuse_features and runner.num_frames > 1):
            raise ValueError(f"backend {options.backend} streams (features reused); clips (reuse_features=False) "
                             "run on pytorch only")
        return runner

    @classmethod
    def check(cls, options: RuntimeOptions) -> None:
        """Refuse an option this runtime cannot honour, before anything is exported (default: none)."""

    @classmethod
    @abc.abstractmethod
    def open(cls, manifest: str | Path, options: RuntimeOptions) -> ExportedRunner:
        """The parts of ``manifest`` loaded into this runtime with ``options``."""

    @abc.abstractmethod
    def _run(self, part: str, feeds: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        """Outputs of ``part`` for ``feeds`` (thread-safe: frames in flight call it from several threads)."""

    def per_frame_state(self, image: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features of one normalised frame (1, 3, S, S) per level; ``[frame]`` for baselines."""
        array = np.ascontiguousarray(image.detach().cpu().float().numpy(), dtype=self.part_dtype)
        states = list(self._run("encoder", {"image": array})) if self.streaming else [array]
        return [torch.from_numpy(np.asarray(state)) for state in states]

    def predict(self, frames: Sequence[Sequence[torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Outputs for the window [t, t-1, ...] of per-frame states: (1,1,S,S) logits, heatmap."""
        if self.streaming:
            feeds = {f"t{k}_f{level}": f.numpy() for k, frame in enumerate(frames) for level, f in enumerate(frame)}
            outputs = self._run("decoder", feeds)
        else:
            outputs = self._run("step", {"clip": np.stack([frame[0].numpy() for frame in frames], axis=1)})
        tensors = [torch.from_numpy(np.asarray(o)).float() for o in outputs]
        return tensors[0], (tensors[1] if self.has_heatmap else None)
