"""Accuracy/cost trade-off of FLA-Net's head widths (the paper gives none).

For each width setting: GFLOPs and parameters per output frame for Res2Net-50 at 352x352
(``flanet.models.cost.measure_cost``), and validation/test Dice after training the same
recipe (``cpu-small``: small CPU encoder, same seed, same epochs) on one synthetic
ultrasound set, through ``flanet compare`` (so Dice comes with a 95% bootstrap interval
over test videos). Writes ``<out>/width_tradeoff.md`` and ``.json``.

    python benchmarks/width_tradeoff.py --out /tmp/widths --epochs 8

CPU-only accuracy numbers come from a small encoder on synthetic data: they rank the
settings, they are not the paper's accuracy.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from flanet.data.synth import generate_dataset
from flanet.experiments.compare import compare_models
from flanet.models import create_model
from flanet.models.cost import measure_cost

SETTINGS: dict[str, dict] = {
    "slim": {"neck_channels": [16, 24, 48, 96], "decoder_channels": [64, 32, 24, 16], "head_channels": 16},
    "lean (default)": {"neck_channels": [32, 64, 128, 256], "decoder_channels": [128, 64, 48, 32], "head_channels": 32},
    "wide": {"neck_channels": [64, 128, 256, 512], "decoder_channels": [256, 128, 64, 64], "head_channels": 64},
    "lean, FFA on strides 16-32 only": {
        "neck_channels": [32, 64, 128, 256], "decoder_channels": [128, 64, 48, 32], "head_channels": 32, "ffa_levels": [2, 3],
    },
}


def _options_override(options: dict) -> str:
    return "model.options=" + json.dumps(options).replace(" ", "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--videos", type=int, default=20)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    data = args.out / "synth"
    if not data.exists():
        generate_dataset(data, videos=args.videos, frames=args.frames, size=args.size, seed=args.seed, progress=True)
    rows = []
    for label, options in SETTINGS.items():
        cost = measure_cost(create_model("flanet", **options), size=352)
        slug = label.split(" ")[0] + ("-ffa23" if "ffa_levels" in options else "")
        overrides = [f"trainer.max_epochs={args.epochs}", f"seed={args.seed}", f"data.image_size={args.size}", _options_override(options)]
        result = compare_models(data, ["flanet"], "cpu-small", overrides, args.out / slug)[0]
        rows.append({"setting": label, "options": options, "res2net50_352": cost.as_dict(), "scores": result})
    (args.out / "width_tradeoff.json").write_text(json.dumps(rows, indent=2, default=str))
    lines = [
        f"Training: cpu-small recipe, {args.epochs} epochs, synthetic set of {args.videos} videos x {args.frames} frames "
        f"at {args.size} px, seed {args.seed}; Dice on its test split (95% bootstrap CI over videos).",
        "",
        "| widths | params (M), Res2Net-50 | GFLOPs / frame streaming, Res2Net-50 @352 | GFLOPs clip | test Dice |",
        "|---|---|---|---|---|",
    ]
    for row in rows:
        c, s = row["res2net50_352"], row["scores"]
        ci = s.get("dice_ci") or [float("nan"), float("nan")]
        lines.append(
            f"| {row['setting']} | {c['params_m']:.1f} | {c['stream_gflops']:.1f} | {c['clip_gflops']:.1f} | "
            f"{s['dice']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}] |"
        )
    (args.out / "width_tradeoff.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
