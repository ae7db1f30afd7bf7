"""Sanity run of the video comparison methods (issue 26 item 5): each trained with the demo recipe.

Every model is trained with the ``demo`` recipe (ResNet-18 from random init, 96 px, batch 4, Adam
1e-3 with a cosine decay over the run) on the demo's synthetic videos (``flanet demo``'s data: 30
videos of 30 frames, split 4:2:4, seed 0), for the same number of epochs, with the same seed; its
best checkpoint (validation Dice) is evaluated on the test videos (standard protocol). Its per-frame
Dice is then paired with UNet's on the same frames (:func:`flanet.demo.compare.compare_by_frame_kind`:
all, normal and hard frames, 95% cluster-bootstrap intervals over videos).

Memory models (STM, AFB-URR, DPSTT) train on their own predictions in the memory and are evaluated
fully automatically (no ground-truth mask at test time), as ``flanet predict`` runs them
(docs/model.md). Finished runs of an earlier invocation with the same ``--out`` are reused, so the
run can be resumed model by model. Usage (about an hour on 2 idle cores for all eight models at 4
epochs; AFB-URR alone is more than half of it)::

    python benchmarks/video_methods_demo.py --epochs 4 --out /tmp/video-methods-demo
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

from flanet.data.synth import generate_dataset
from flanet.demo.compare import compare_by_frame_kind, read_frame_kinds
from flanet.evaluation import EvaluationSettings, evaluate_checkpoint
from flanet.training import train

MODELS = "flanet,unet,pnsnet,pnsplus,stm,dpstt,dcfnet,afb-urr"
BASELINE = "unet"


def _train_and_evaluate(model: str, root: Path, out: Path, epochs: int, seed: int, resamples: int) -> dict:
    """Train ``model`` with the demo recipe (or reuse a finished run) and evaluate its best checkpoint."""
    run = out / "runs" / model
    seconds = None
    if not (run / "checkpoints" / "best.pt").is_file():
        start = time.perf_counter()
        train("demo", [f"data.root={root}", f"model.name={model}", f"seed={seed}", f"trainer.max_epochs={epochs}",
                       "trainer.enable_progress_bar=false", f"output.run_dir={run}"])
        seconds = time.perf_counter() - start
    result = evaluate_checkpoint(run / "checkpoints" / "best.pt", root, "test", out / "eval" / model, device="cpu",
                                 method=model, settings=EvaluationSettings(resamples=resamples, seed=seed, progress=False))
    metrics = result.metrics
    return {"metrics": {k: metrics.get(k) for k in ("dice", "iou", "mae", "vps_dice", "vps_mae")},
            "per_frame": result.per_frame, "train_seconds": seconds}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4, help="epochs per model, 90 steps each (demo: 11 = 990 steps)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models", default=MODELS, help=f"comma-separated registered names (default: {MODELS})")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples of the intervals")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    root = args.out / "data"
    if not root.is_dir():
        generate_dataset(root, videos=30, frames=30, size=128, seed=args.seed, progress=False)
    kinds = read_frame_kinds(root / "frame_info.csv")
    models = args.models.split(",")
    runs = {model: _train_and_evaluate(model, root, args.out, args.epochs, args.seed, args.resamples)
            for model in ([BASELINE] + [m for m in models if m != BASELINE])}
    results = {}
    for model in models:
        paired = compare_by_frame_kind(runs[model]["per_frame"], runs[BASELINE]["per_frame"], kinds,
                                       args.resamples, args.seed)
        results[model] = {**runs[model]["metrics"], "train_seconds": runs[model]["train_seconds"],
                          "by_frame_kind": {group: paired[group] for group in ("all", "normal", "hard") if group in paired}}
        row = results[model]["by_frame_kind"]
        print(f"{model}: Dice {row['all']['video_model']:.3f} (normal {row['normal']['video_model']:.3f}, "
              f"hard {row['hard']['video_model']:.3f}); minus UNet {row['all']['difference']:+.3f}", flush=True)
    settings = vars(args) | {"out": str(args.out), "torch_threads": os.environ.get("OMP_NUM_THREADS")}
    (args.out / "video_methods_demo.json").write_text(json.dumps({"settings": settings, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
