"""Where does a model's MAE come from? Issue 31 item 9: FLA-Net's diffuse probability mass.

Trains FLA-Net and UNet with the ``demo`` recipe on the demo's synthetic videos (same seed, same
epochs; the cosine schedule decays over them as in ``flanet demo``), evaluates both best checkpoints on the test videos with the probability maps saved, and
splits each model's MAE (standard protocol: mean over frames of mean ``|p - g|``) by where the
error lies:

- ``lesion_free``: frames without a lesion (all of ``p`` is error there);
- on lesion frames, pixels ``inside`` the lesion more than ``--band`` px from its edge, the
  ``band`` of +-``--band`` px around the edge, and ``outside`` (background beyond the band);
- ``soft``: MAE minus the MAE of the same maps thresholded at 0.5 (the part due to probabilities
  that are neither 0 nor 1, as opposed to wrong decisions).

Each part is a contribution: the parts of a model add up to its MAE. Usage (minutes on 2 cores)::

    python benchmarks/mae_sources.py --epochs 3 --out /tmp/mae-sources
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import cv2
import numpy as np

from flanet.data import discover, read_mask
from flanet.data.synth import generate_dataset
from flanet.evaluation import EvaluationSettings, evaluate_checkpoint
from flanet.evaluation.prediction_folder import frame_name, scored_indices
from flanet.training import train

MODELS = "flanet,unet"


def decompose(pred_dir: Path, root: Path, band: int) -> dict[str, float]:
    """MAE contributions (see the module docstring) of the probability PNGs in ``pred_dir``."""
    video_set = discover(root)
    parts = {"lesion_free": 0.0, "inside": 0.0, "band": 0.0, "outside": 0.0, "soft": 0.0}
    frames, mae = 0, 0.0
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * band + 1, 2 * band + 1))
    for video in video_set.subset("test"):
        for index in scored_indices(video):
            gt = read_mask(video.masks[index]).astype(bool)
            prob = cv2.imread(str(pred_dir / video.id / f"{frame_name(video, index)}.png"), cv2.IMREAD_GRAYSCALE)
            p = prob.astype(np.float64) / 255.0
            error = np.abs(p - gt)
            n = error.size
            frames += 1
            mae += error.sum() / n
            parts["soft"] += (error.sum() - ((p >= 0.5) != gt).sum()) / n
            if not gt.any():
                parts["lesion_free"] += error.sum() / n
                continue
            grown = cv2.dilate(gt.astype(np.uint8), kernel).astype(bool)
            shrunk = cv2.erode(gt.astype(np.uint8), kernel).astype(bool)
            parts["inside"] += error[shrunk].sum() / n
            parts["band"] += error[grown & ~shrunk].sum() / n
            parts["outside"] += error[~grown].sum() / n
    return {"mae": mae / frames, **{k: v / frames for k, v in parts.items()}, "frames": frames}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=3, help="epochs per model, 90 steps each (demo: 11 = 990 steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--videos", type=int, default=30, help="synthetic videos (demo: 30, split 4:2:4)")
    parser.add_argument("--frames", type=int, default=30, help="frames per video (demo: 30)")
    parser.add_argument("--band", type=int, default=2, help="half-width in px of the edge band (frames are 128 px)")
    parser.add_argument("--models", default=MODELS, help="comma-separated model specs: a model name, optionally "
                        "with overrides joined by '+', e.g. flanet+model.options.mask_stride=2 (default: flanet,unet)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    root = args.out / "data"
    if not root.is_dir():
        generate_dataset(root, videos=args.videos, frames=args.frames, size=128, seed=args.seed, progress=False)
    saved = args.out / "mae_sources.json"
    results: dict[str, dict] = json.loads(saved.read_text())["results"] if saved.is_file() else {}
    for spec in args.models.split(","):
        model, *extra = spec.split("+")
        label = spec.replace("+", "_").replace("=", "-")
        start, run, seconds = time.perf_counter(), args.out / "runs" / label, None
        if not (run / "checkpoints" / "best.pt").is_file():  # a finished run of an earlier invocation is reused
            train("demo", [f"data.root={root}", f"model.name={model}", f"seed={args.seed}",
                           f"trainer.max_epochs={args.epochs}", *extra,
                           "trainer.enable_progress_bar=false", f"output.run_dir={run}"])
            seconds = time.perf_counter() - start
        best = run / "checkpoints" / "best.pt"
        evaluation = args.out / "eval" / label
        result = evaluate_checkpoint(best, root, "test", evaluation, save_pred=True, device="cpu",
                                     settings=EvaluationSettings(resamples=200, progress=False, jobs=1))
        results[spec] = {**decompose(evaluation / "predictions", root, args.band), "dice": result.metrics["dice"],
                          "vps_mae": result.metrics.get("vps_mae"), "train_seconds": seconds}
        print(spec, json.dumps(results[spec], indent=1))
    saved.write_text(json.dumps({"settings": vars(args) | {"out": str(args.out)},
                                                           "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
