"""Mask head at stride 4 (v0.1) vs stride 2 (``mask_stride=2``), on the demo's synthetic data.

Both heads train FLA-Net (``flanet``) with the ``demo`` recipe (resnet18, random init, 96 px,
batch 4, Adam 1e-3 cosine) on the demo's data set (30 videos x 30 frames, 128 px, seed 0,
12 test videos), the same seed and the same fixed number of epochs, then stream every test
video with :class:`flanet.inference.VideoSegmenter` (causal window, threshold 0.5, masks at
the frame's 128 px) from each run's best checkpoint (best validation Dice). Per frame: Dice
and the boundary F-score (BF, tolerance ``--tolerance`` px: a boundary pixel counts when the
other mask's boundary is within that distance, distance transforms by OpenCV). Paired
differences stride 2 - stride 4 with 95% cluster-bootstrap intervals over videos
(:func:`flanet.demo.compare.paired_dice`), on all, normal and hard frames; plus the streaming
GFLOPs per output frame of each head on Res2Net-50 at 352.

    python benchmarks/mask_resolution.py --out /tmp/mask-resolution --epochs 15

Writes ``<out>/mask_resolution.md`` and ``.json``. CPU-heavy (two demo trainings).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from flanet.data import discover
from flanet.data.synth import generate_dataset
from flanet.demo.compare import paired_dice, read_frame_kinds
from flanet.inference import VideoSegmenter
from flanet.models import create_model, load_checkpoint
from flanet.models.cost import measure_cost
from flanet.training import load_config, train

HEADS = {"stride 4 (v0.1)": 4, "stride 2": 2}


def boundary(mask: np.ndarray) -> np.ndarray:
    """Boundary pixels of a binary mask: the mask minus its 3x3 erosion."""
    m = mask.astype(np.uint8)
    return (m - cv2.erode(m, np.ones((3, 3), np.uint8), borderType=cv2.BORDER_CONSTANT, borderValue=0)).astype(bool)


def boundary_f_score(pred: np.ndarray, gt: np.ndarray, tolerance: float) -> float:
    """BF score of two binary masks (1 when both are empty, 0 when only one is)."""
    bp, bg = boundary(pred), boundary(gt)
    if not bp.any() or not bg.any():
        return float(bp.any() == bg.any())
    # distance of every pixel to the nearest boundary pixel of the other mask
    dist_g = cv2.distanceTransform((~bg).astype(np.uint8), cv2.DIST_L2, 5)
    dist_p = cv2.distanceTransform((~bp).astype(np.uint8), cv2.DIST_L2, 5)
    precision = float((dist_g[bp] <= tolerance).mean())
    recall = float((dist_p[bg] <= tolerance).mean())
    return 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)


def dice(pred: np.ndarray, gt: np.ndarray) -> float:
    """Dice of two binary masks (1 when both are empty)."""
    total = pred.sum() + gt.sum()
    return 1.0 if total == 0 else float(2 * (pred & gt).sum() / total)


def score_checkpoint(checkpoint: Path, root: Path, image_size: int, tolerance: float) -> list[dict]:
    """Stream every test video; returns one row per annotated frame."""
    model = load_checkpoint(checkpoint).model
    segmenter = VideoSegmenter(model, image_size=image_size, device="cpu")
    rows = []
    for video in discover(root).subset("test"):
        frames = (cv2.cvtColor(cv2.imread(str(p)), cv2.COLOR_BGR2RGB) for p in video.frames)
        for path, mask_path, result in zip(video.frames, video.masks, segmenter.stream(frames)):
            if mask_path is None:
                continue
            gt = cv2.imread(str(mask_path), cv2.IMREAD_GRAYSCALE) > 127
            rows.append({"video": video.id, "frame": path.stem, "dice": dice(result.mask, gt),
                         "bf": boundary_f_score(result.mask, gt, tolerance)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=15, help="15 = 1350 steps of 90 batches, the run in docs/benchmarks.md")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tolerance", type=float, default=2.0)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--videos", type=int, default=30, help="demo: 30 (smaller only for a smoke run)")
    parser.add_argument("--frames", type=int, default=30, help="demo: 30")
    args = parser.parse_args()
    root = args.out / "data"
    if not root.exists():
        generate_dataset(root, args.videos, args.frames, 128, args.seed, progress=False)
    load_before = os.getloadavg()
    runs, scores, cost = {}, {}, {}
    for label, stride in HEADS.items():
        slug = f"stride{stride}"
        overrides = [f"data.root={root}", "model.name=flanet", f"seed={args.seed}", f"output.run_dir={args.out / slug}",
                     "trainer.enable_progress_bar=false", f"trainer.max_epochs={args.epochs}",
                     "model.options=" + json.dumps({"mask_stride": stride}).replace(" ", "")]
        begin = time.perf_counter()
        run_dir = train(load_config("demo", overrides), [])
        runs[label] = {"train_s": time.perf_counter() - begin, "run_dir": str(run_dir)}
        best = run_dir / "checkpoints" / "best.pt"
        scores[label] = score_checkpoint(best if best.is_file() else run_dir / "checkpoints" / "last.pt", root, 96, args.tolerance)
        cost[label] = measure_cost(create_model("flanet", mask_stride=stride), 352).as_dict()
    kinds = read_frame_kinds(root / "frame_info.csv")
    base, new = scores["stride 4 (v0.1)"], scores["stride 2"]
    assert [(r["video"], r["frame"]) for r in base] == [(r["video"], r["frame"]) for r in new]
    videos = [r["video"] for r in base]
    kind = np.array([kinds.get((r["video"], r["frame"]), "none") for r in base])
    groups = {"all": np.ones(len(base), bool), "normal": kind == "none", "hard": kind != "none"}
    table = {}
    for metric in ("dice", "bf"):
        a, b = np.array([r[metric] for r in new]), np.array([r[metric] for r in base])
        table[metric] = {g: paired_dice(videos, a, b, sel, args.resamples, args.seed).as_dict() for g, sel in groups.items()}
    machine = {"cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(), "platform": platform.platform(),
               "load_avg_before": load_before, "load_avg_after": os.getloadavg(), "torch": torch.__version__}
    record = {"settings": vars(args) | {"out": str(args.out)}, "machine": machine, "runs": runs, "cost_res2net50_352": cost,
              "paired": table}
    (args.out / "mask_resolution.json").write_text(json.dumps(record, indent=2, default=str))

    def ci(v: list) -> str:
        return f"[{v[0]:.3f}, {v[1]:.3f}]"

    lines = [f"machine: {machine}", f"epochs {args.epochs}, seed {args.seed}, BF tolerance {args.tolerance} px", "",
             "| metric | frames | n | stride 4 (v0.1) | stride 2 | stride 2 - stride 4 [95% CI] |", "|---|---|---|---|---|---|"]
    for metric, name in (("dice", "Dice"), ("bf", f"boundary F ({args.tolerance:g} px)")):
        for g, row in table[metric].items():
            lines.append(f"| {name} | {g} | {row['frames']} | {row['image_model']:.3f} {ci(row['image_model_ci'])} | "
                         f"{row['video_model']:.3f} {ci(row['video_model_ci'])} | {row['difference']:+.3f} {ci(row['difference_ci'])} |")
    lines += ["", "| head | streaming GFLOPs / frame (Res2Net-50, 352) | params (M) | training s |", "|---|---|---|---|"]
    lines += [f"| {label} | {cost[label]['stream_gflops']:.2f} | {cost[label]['params_m']:.2f} | {runs[label]['train_s']:.0f} |"
              for label in HEADS]
    text = "\n".join(lines) + "\n"
    (args.out / "mask_resolution.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
