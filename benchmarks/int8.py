"""INT8 against float32 on the CPU, per exported backend: streaming frames/s side by side, and the Dice drop.

For each backend (onnxruntime, openvino) the float32 ONNX parts of one model are quantized as
``flanet export --precision int8`` does (:func:`flanet.inference.runtimes.quantize.quantize_export`),
calibrated on the ``--calibration-split`` videos of ``--data`` and checked on its ``--held-out-split``
videos (Dice against the ground truth, float32 and INT8, at the model's input size). Then the float32
and the INT8 segmenters of that backend stream the same frames (``VideoSegmenter.stream``, what
``flanet predict`` runs per frame, without decoding or writing) in ``--rounds`` rounds, the order
alternating; a round's ratio is INT8 frames/s over float32 frames/s, so load shared by both cancels
to first order.

    python benchmarks/int8.py --checkpoint best.pt --data synth --rounds 3
    python benchmarks/int8.py --encoder res2net50_26w_4s --image-size 352 --data synth   # random weights: speed

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

import torch

from flanet.inference import VideoSegmenter
from flanet.inference.runtimes.calibration import read_videos
from flanet.inference.runtimes.exported import export_for_onnxruntime
from flanet.inference.runtimes.quantize import quantize_export
from flanet.models import create_model, load_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, help="a trained flanet checkpoint (else --encoder, random weights)")
    parser.add_argument("--encoder", default="res2net50_26w_4s")
    parser.add_argument("--image-size", type=int)
    parser.add_argument("--data", type=Path, required=True, help="data root with split lists")
    parser.add_argument("--calibration-split", default="train")
    parser.add_argument("--held-out-split", default="test")
    parser.add_argument("--calibration-frames", type=int, default=64)
    parser.add_argument("--backends", nargs="+", default=["onnxruntime", "openvino"])
    parser.add_argument("--frames", type=int, default=16, help="frames streamed per timed run")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    load_before = os.getloadavg()
    if args.checkpoint:
        model = load_checkpoint(args.checkpoint, map_location="cpu").model
    else:
        torch.manual_seed(0)
        model = create_model("flanet", encoder=args.encoder)
    model.eval()
    size = args.image_size or model.trained_image_size or 352
    work = Path(tempfile.mkdtemp(prefix="int8-bench-"))
    float_manifest = export_for_onnxruntime(model, size, cache_dir=work / "cache")
    calibration = read_videos([args.data], args.calibration_split)
    held_out = read_videos([args.data], args.held_out_split)
    frames = [frame for frame, _ in held_out[0].frames(args.frames)]
    result: dict = {"settings": vars(args) | {"image_size": size}, "machine": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "torch": torch.__version__, "backends": {}}
    for backend in args.backends:
        begin = time.perf_counter()
        manifest = quantize_export(float_manifest, work / backend / "flanet.onnx", backend, calibration, held_out,
                                   max_dice_drop=None, frames=args.calibration_frames)
        quantize_s = time.perf_counter() - begin
        segmenters = {
            "float32": VideoSegmenter(model, size, backend=backend, onnx=float_manifest),
            "int8": VideoSegmenter(model, size, backend=backend, precision="int8", onnx=work / backend / "flanet.json"),
        }
        for segmenter in segmenters.values():
            list(segmenter.stream(frames[:3]))  # warm-up
        rounds = []
        for index in range(args.rounds):
            row = {}
            for name in (("float32", "int8") if index % 2 == 0 else ("int8", "float32")):
                start = time.perf_counter()
                count = sum(1 for _ in segmenters[name].stream(frames))
                row[name] = count / (time.perf_counter() - start)
            row["ratio"] = row["int8"] / row["float32"]
            rounds.append(row)
        result["backends"][backend] = {
            "quantize_s": quantize_s, "quantization": manifest["quantization"], "rounds": rounds,
            "median_ratio": statistics.median(r["ratio"] for r in rounds),
            "median_fps": {p: statistics.median(r[p] for r in rounds) for p in ("float32", "int8")},
        }
    result["load_before_after"] = [load_before, os.getloadavg()]
    print(json.dumps(result, indent=1, default=str))


if __name__ == "__main__":
    main()
