"""Does training on runs of consecutive frames change Dice? Clips vs runs, same steps, paired interval.

Trains FLA-Net twice with the ``demo`` recipe on the demo's synthetic set (``flanet.data.synth``: 30
videos x 30 frames, 128 px, split 4:2:4), the same seed and the same number of optimiser steps:
random clips (``data.batch_size=--clips``) and runs of consecutive frames
(``data.batch_size=--runs data.sequence_length=--length``, the pair of ``benchmarks/sequence_sampler.py``
at equal batch memory). Both best checkpoints are evaluated on the test videos (``flanet evaluate``'s
standard protocol) and compared frame by frame: the Dice difference runs - clips with its 95%
interval from a paired bootstrap over videos (``flanet.demo.compare.paired_dice``).

    python benchmarks/sequence_dice.py --out /tmp/sequence-dice --steps 990

Prints one JSON object (also written to ``<out>/sequence_dice.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import time
from dataclasses import asdict
from pathlib import Path

from flanet.data import ClipDataset, discover
from flanet.data.sequences import SequenceDataset
from flanet.data.synth import generate_dataset
from flanet.demo.compare import aligned_dice, paired_dice
from flanet.evaluation import EvaluationSettings, evaluate_checkpoint
from flanet.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=990, help="optimiser steps of each run (the demo's 990)")
    parser.add_argument("--clips", type=int, default=4)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--length", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = args.out / "data"
    if not root.is_dir():
        generate_dataset(root, videos=30, frames=30, size=128, seed=args.seed)
    settings = {"clips": [f"data.batch_size={args.clips}"],
                "runs": [f"data.batch_size={args.runs}", f"data.sequence_length={args.length}"]}
    video_set = discover(root)
    per_epoch = {"clips": len(ClipDataset(video_set, "train", image_size=32)) // args.clips,
                 "runs": len(SequenceDataset(video_set, "train", image_size=32, run_length=args.length)) // args.runs}
    results, seconds = {}, {}
    for name, extra in settings.items():
        begin = time.perf_counter()
        epochs = math.ceil(args.steps / per_epoch[name])  # the recipe's cosine decays over each run's own epochs
        run_dir = train("demo", [f"data.root={root}", f"seed={args.seed}", f"trainer.max_steps={args.steps}",
                                 f"trainer.max_epochs={epochs}", "trainer.enable_progress_bar=false",
                                 f"output.run_dir={args.out / 'runs' / name}", *extra])
        seconds[name] = time.perf_counter() - begin
        best = run_dir / "checkpoints" / "best.pt"
        results[name] = evaluate_checkpoint(best if best.is_file() else run_dir / "checkpoints" / "last.pt", root,
                                            "test", args.out / "evaluation" / name,
                                            settings=EvaluationSettings(seed=args.seed))
    videos, _, dice_runs, dice_clips = aligned_dice(results["runs"].per_frame, results["clips"].per_frame)
    paired = paired_dice(videos, dice_runs, dice_clips, seed=args.seed)
    report = {"settings": vars(args) | {"out": str(args.out)}, "machine": platform.processor() or platform.machine(),
              "load_after": os.getloadavg(), "train_s": seconds, "steps_per_epoch": per_epoch,
              "dice_runs_minus_clips": asdict(paired) if paired is not None else None}
    (args.out / "sequence_dice.json").write_text(json.dumps(report, indent=1, default=str))
    print(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
