"""ONNX Runtime runner of :class:`~flanet.inference.VideoSegmenter`: the exported parts in onnxruntime sessions.

The parts and their feeds are those of :mod:`flanet.inference.runtimes.exported` (one ``encoder`` pass per
frame, the ``decoder`` over the last three frames' features: paper, Sec. 3, Fig. 2); this module only
loads them into onnxruntime and picks its execution providers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flanet.inference.runtimes.base import RuntimeOptions
from flanet.inference.runtimes.exported import ExportedRunner, read_export_manifest
from flanet.threads import available_cpus

__all__ = ["GPU_PROVIDERS", "OnnxRunner", "onnx_providers"]

GPU_PROVIDERS = ("TensorrtExecutionProvider", "CUDAExecutionProvider")


def onnx_providers(device: str | torch.device | None = None) -> list[str]:
    """Execution providers for ``device``: TensorRT and CUDA first when present, CPU always last.

    Args:
        device: None (any present GPU provider, else CPU), ``"cpu"`` (CPU only) or a CUDA device.

    Raises:
        ValueError: a CUDA device was asked for but this onnxruntime build has no GPU provider.
    """
    import onnxruntime

    kind = torch.device(device).type if device is not None else None
    available = onnxruntime.get_available_providers()
    gpu = [p for p in GPU_PROVIDERS if p in available] if kind in (None, "cuda") else []
    if kind == "cuda" and not gpu:
        raise ValueError(
            f"device {device}: this onnxruntime build has no CUDA/TensorRT provider (present: "
            f"{', '.join(available)}); install onnxruntime-gpu or use --device cpu"
        )
    return [*gpu, "CPUExecutionProvider"]




class OnnxRunner(ExportedRunner):
    """The exported parts of one model in onnxruntime sessions.

    Args:
        manifest: ``flanet.json`` written by ``flanet export`` / :func:`export_for_onnxruntime`.
        providers: onnxruntime execution providers (default :func:`onnx_providers`).
        threads: intra-op threads (default: the CPUs available to this process).

    Raises:
        FileNotFoundError: the manifest or a part it names is missing.
        ValueError: the manifest has neither an encoder + decoder nor a step part.
    """

    runtime = "onnxruntime"

    def __init__(self, manifest: str | Path, providers: Sequence[str] | None = None,
                 threads: int | None = None) -> None:
        import onnxruntime

        parts = read_export_manifest(manifest)
        super().__init__(parts)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads or available_cpus()
        options.inter_op_num_threads = 1
        # idle intra-op threads sleep instead of spinning: a spinning pool collapses under
        # competing processes (docs/benchmarks.md, "Threads on a shared CPU")
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.providers = list(providers or onnx_providers())

        def session(name: str) -> Any:
            return onnxruntime.InferenceSession(str(parts.file(name)), options, providers=self.providers)

        names = ("encoder", "decoder") if self.streaming else ("step",)
        self.sessions = {name: session(name) for name in names}
        self.has_heatmap = len(self.sessions[names[-1]].get_outputs()) == 2

    @classmethod
    def open(cls, manifest: str | Path, options: RuntimeOptions) -> OnnxRunner:
        """Sessions on ``options.device``'s providers; each frame in flight's worker gets an equal share of the CPUs."""
        return cls(manifest, onnx_providers(options.device), threads=max(1, available_cpus() // options.frames_in_flight))

    def _run(self, part: str, feeds: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        """``part``'s session on ``feeds`` (``InferenceSession.run`` is thread-safe)."""
        return self.sessions[part].run(None, feeds)
