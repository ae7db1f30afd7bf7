"""OpenVINO backend of :class:`~flanet.inference.VideoSegmenter`: the exported ONNX parts on OpenVINO's CPU plugin.

The same exported files as the onnxruntime backend (:func:`~flanet.inference.runtimes.exported.export_for_onnxruntime`:
the per-frame ``encoder`` and the ``decoder`` of the last three frames' features, or an image baseline's
``step``), read and compiled by OpenVINO; the streaming loop is :class:`~flanet.inference.VideoSegmenter`'s
(paper, Sec. 3, Fig. 2: each frame encoded once, its features reused by the next two outputs).

Settings, measured on the 2-core CPU of docs/benchmarks.md ("OpenVINO"):

* ``INFERENCE_PRECISION_HINT = f32``. OpenVINO's CPU plugin computes in bfloat16 by default on CPUs with
  bfloat16 instructions (this one has AVX512-BF16 but no AMX). There, bfloat16 was both slower (encoder
  152-160 ms against 103-106 ms) and different (0.9 % of the mask pixels flipped), so flanet asks for float32
  everywhere, which is also what the masks are checked against (PyTorch).
* ``PERFORMANCE_HINT = LATENCY``: one stream, every thread on the one frame in flight; with
  ``streams`` > 1 (``VideoSegmenter(frames_in_flight=N)``, :mod:`flanet.inference.core.in_flight`)
  ``THROUGHPUT`` with N streams that share the threads, and one infer request per stream.
* ``INFERENCE_NUM_THREADS``: the CPUs available to the process (its affinity mask), as for onnxruntime.
* ``ENABLE_CPU_PINNING = False`` (OpenVINO pins its threads to cores by default on Linux): unpinned
  streaming was no slower alone (6.81 and 6.90 frames/s against 5.76 and 6.56 pinned) nor beside one busy
  process (3.72 and 3.70 against 3.62 and 3.67; two alternating pairs, Res2Net-50 at 352), and an unpinned
  thread can leave a core another process keeps busy.
"""

from __future__ import annotations

import queue
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from flanet.inference.runtimes.base import RuntimeOptions
from flanet.inference.runtimes.exported import ExportedRunner, read_export_manifest
from flanet.threads import available_cpus

__all__ = ["OpenVinoRunner", "openvino_config"]


def openvino_config(threads: int | None = None, streams: int = 1) -> dict[str, Any]:
    """Compile settings of the CPU plugin (see the module docstring): float32, latency (or ``streams``
    streams sharing the threads), unpinned threads."""
    mode = {"PERFORMANCE_HINT": "LATENCY"} if streams == 1 else {"PERFORMANCE_HINT": "THROUGHPUT",
                                                                  "NUM_STREAMS": int(streams)}
    return {
        **mode,
        "INFERENCE_PRECISION_HINT": "f32",
        "INFERENCE_NUM_THREADS": int(threads or available_cpus()),
        "ENABLE_CPU_PINNING": False,
    }


class OpenVinoRunner(ExportedRunner):
    """The exported parts of one model compiled by OpenVINO for the CPU.

    Args:
        manifest: ``flanet.json`` written by ``flanet export`` / :func:`export_for_onnxruntime`.
        threads: inference threads (default: the CPUs available to this process).
        streams: frames that may run at the same time (from as many Python threads; default 1).

    Raises:
        ValueError: OpenVINO is not installed, or the manifest has no part to run.
        FileNotFoundError: the manifest or a part it names is missing.
    """

    runtime = "openvino"

    def __init__(self, manifest: str | Path, threads: int | None = None, streams: int = 1) -> None:
        try:
            import openvino
        except ImportError as error:
            raise ValueError("backend openvino needs the openvino package: pip install 'flanet[export]'") from error
        parts = read_export_manifest(manifest)
        super().__init__(parts)
        core = openvino.Core()
        config = openvino_config(threads, streams)
        names = ("encoder", "decoder") if self.streaming else ("step",)
        self.compiled = {name: core.compile_model(str(parts.file(name)), "CPU", config) for name in names}
        # infer requests, reused frame after frame, one per stream and part (a request runs one frame at
        # a time; the compiled model is thread-safe); infer() returns copies of its outputs
        self.requests: dict[str, queue.SimpleQueue] = {name: queue.SimpleQueue() for name in names}
        for name in names:
            for _ in range(streams):
                self.requests[name].put(self.compiled[name].create_infer_request())
        self.has_heatmap = len(self.compiled[names[-1]].outputs) == 2

    @classmethod
    def check(cls, options: RuntimeOptions) -> None:
        """OpenVINO runs on the CPU here: another device is refused."""
        if options.device is not None and torch.device(options.device).type != "cpu":
            raise ValueError(f"backend openvino runs on the CPU, not on {options.device}; use backend onnxruntime "
                             "or pytorch")

    @classmethod
    def open(cls, manifest: str | Path, options: RuntimeOptions) -> OpenVinoRunner:
        """The parts compiled with one stream per frame in flight."""
        return cls(manifest, streams=options.frames_in_flight)

    def _run(self, part: str, feeds: dict[str, np.ndarray]) -> Sequence[np.ndarray]:
        """Runs ``part`` on a free infer request (thread-safe); the outputs are the caller's copies."""
        request = self.requests[part].get()
        try:
            return request.infer(feeds).to_tuple()
        finally:
            self.requests[part].put(request)
