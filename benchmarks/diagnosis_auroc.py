"""Issue 30 "Done when": the diagnosis head trained on synthetic labels, its test AUROC with an interval.

Generates a synthetic set (``flanet.data.synth``: BI-RADS cues per pathology, ``video_labels.csv``),
trains FLA-Net with the ``cpu-small`` recipe and the diagnosis head beside it (``diagnosis.weight``),
then the head alone on the frozen model (``--task diagnosis``), and runs ``flanet evaluate`` on the
test videos: AUROC with its 95% bootstrap interval over videos, sensitivity and specificity at the
validation threshold, ECE, and the detection scores (COCO AP). Usage (minutes on 2 cores)::

    python benchmarks/diagnosis_auroc.py --out /tmp/diagnosis-auroc
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flanet.cli import main as flanet
from flanet.data.synth import generate_dataset


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--videos", type=int, default=50)
    parser.add_argument("--frames", type=int, default=10)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--joint-epochs", type=int, default=1)
    parser.add_argument("--frozen-epochs", type=int, default=6)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    data = args.out / "data"
    if not data.is_dir():
        generate_dataset(data, videos=args.videos, frames=args.frames, size=args.image_size, seed=args.seed, progress=False)
    common = ["--config", "cpu-small", f"data.root={data}", f"data.image_size={args.image_size}", f"seed={args.seed}",
              "trainer.enable_progress_bar=false", "diagnosis.labels=[pathology]", "data.batch_size=4"]
    joint, frozen = args.out / "joint", args.out / "frozen"
    if flanet(["train", *common, f"trainer.max_epochs={args.joint_epochs}", "diagnosis.weight=0.5",
               f"output.run_dir={joint}"]) != 0:
        raise SystemExit("joint training failed")
    if flanet(["train", "--task", "diagnosis", *common, f"trainer.max_epochs={args.frozen_epochs}",
               f"model.init_from={joint / 'checkpoints' / 'last.pt'}", f"output.run_dir={frozen}"]) != 0:
        raise SystemExit("frozen training failed")
    best = frozen / "checkpoints" / "best.pt"
    checkpoint = best if best.is_file() else frozen / "checkpoints" / "last.pt"
    if flanet(["evaluate", "--checkpoint", str(checkpoint), "--data", str(data), "--split", "test",
               "--out", str(args.out / "eval")]) != 0:
        raise SystemExit("evaluation failed")
    metrics = json.loads((args.out / "eval" / "metrics.json").read_text())
    scores = metrics["diagnosis"]["labels"]["pathology"]
    summary = {"settings": vars(args) | {"out": str(args.out)},
               "diagnosis": {k: v for k, v in scores.items() if k != "reliability"},
               "detection": {k: metrics.get(k) for k in ("box_ap", "box_ap50", "box_ap75")}}
    (args.out / "diagnosis_auroc.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
    print(f"AUROC {scores['auroc']:.3f} [{scores['auroc_ci'][0]:.3f}, {scores['auroc_ci'][1]:.3f}] over "
          f"{scores['videos']} test videos")


if __name__ == "__main__":
    main()
