"""OpenVINO backend of :class:`~flanet.inference.VideoSegmenter`: the exported ONNX parts on OpenVINO's CPU plugin.

The same exported files as the onnxruntime backend (:func:`~flanet.inference.onnx_backend.export_for_onnxruntime`:
the per-frame ``encoder`` and the ``decoder`` of the last three frames' features, or an image baseline's
``step``), read and compiled by OpenVINO; the streaming loop is :class:`~flanet.inference.VideoSegmenter`'s
(paper, Sec. 3, Fig. 2: each frame encoded once, its features reused by the next two outputs).

Settings, measured on the 2-core CPU of docs/benchmarks.md ("OpenVINO"):

* ``INFERENCE_PRECISION_HINT = f32``. OpenVINO's CPU plugin computes in bfloat16 by default on CPUs with
  bfloat16 instructions (this one has AVX512-BF16 but no AMX). There, bfloat16 was both slower (encoder
  152-160 ms against 103-106 ms) and different (1 % of the mask pixels flipped), so flanet asks for float32
  everywhere, which is also what the masks are checked against (PyTorch).
* ``PERFORMANCE_HINT = LATENCY``: one stream, every thread on the one frame in flight.
* ``INFERENCE_NUM_THREADS``: the CPUs available to the process (its affinity mask), as for onnxruntime.
* ``ENABLE_CPU_PINNING = False`` (OpenVINO pins its threads to cores by default on Linux): unpinned
  streaming was no slower alone (6.81 and 6.90 frames/s against 5.76 and 6.56 pinned) nor beside one busy
  process (3.72 and 3.70 against 3.62 and 3.67; two alternating pairs, Res2Net-50 at 352), and an unpinned
  thread can leave a core another process keeps busy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flanet.inference.onnx_backend import read_manifest
from flanet.inference.threads import available_cpus

__all__ = ["OpenVinoRunner", "openvino_config"]


def openvino_config(threads: int | None = None) -> dict[str, Any]:
    """Compile settings of the CPU plugin (see the module docstring): float32, latency, unpinned threads."""
    return {
        "PERFORMANCE_HINT": "LATENCY",
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": int(threads or available_cpus()),
        "ENABLE_CPU_PINNING": False,
    }


class OpenVinoRunner:
    """The exported parts of one model compiled by OpenVINO for the CPU.

    Args:
        manifest: ``flanet.json`` written by ``flanet export`` / :func:`export_for_onnxruntime`.
        threads: inference threads (default: the CPUs available to this process).

    Raises:
        ValueError: OpenVINO is not installed, or the manifest has no part to run.
        FileNotFoundError: the manifest or a part it names is missing.
    """

    def __init__(self, manifest: str | Path, threads: int | None = None) -> None:
        try:
            import openvino
        except ImportError as error:
            raise ValueError("backend openvino needs the openvino package: pip install 'flanet[export]'") from error
        parts = read_manifest(manifest)
        self.image_size, self.num_frames, self.streaming = parts.image_size, parts.num_frames, parts.streaming
        self.input_dtype = parts.input_dtype
        core = openvino.Core()
        config = openvino_config(threads)
        names = ("encoder", "decoder") if self.streaming else ("step",)
        # one infer request per part, reused frame after frame; infer() returns copies of its outputs
        self.requests = {name: core.compile_model(str(parts.file(name)), "CPU", config).create_infer_request()
                         for name in names}
        self.has_heatmap = len(self.requests[names[-1]].model_outputs) == 2

    def per_frame_state(self, image: torch.Tensor) -> list[np.ndarray] | np.ndarray:
        """Encoder features of one normalised frame (1, 3, S, S); the frame itself for baselines."""
        array = np.ascontiguousarray(image.detach().cpu().float().numpy(), dtype=self.input_dtype)
        if not self.streaming:
            return array
        return list(self.requests["encoder"].infer({"image": array}).to_tuple())

    def predict(self, window: Sequence[Any]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Outputs for the window [t, t-1, ...] of per-frame states: (1,1,S,S) logits, heatmap."""
        if self.streaming:
            feeds = {f"t{k}_f{level}": f for k, frame in enumerate(window) for level, f in enumerate(frame)}
            outputs = self.requests["decoder"].infer(feeds).to_tuple()
        else:
            outputs = self.requests["step"].infer({"clip": np.stack(window, axis=1)}).to_tuple()
        tensors = [torch.from_numpy(np.asarray(o)).float() for o in outputs]
        return tensors[0], (tensors[1] if self.has_heatmap else None)
