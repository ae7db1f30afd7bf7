"""``flanet evaluate``: score a checkpoint or a prediction folder (``flanet compare``: :mod:`flanet.experiments.compare`)."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from flanet.argtypes import image_size, keep_region, pixel_spacing, unit_interval
from flanet.defaults import IMAGE_SIZE
from flanet.errors import UsageError
from flanet.evaluation.parallel import default_jobs
from flanet.models.hub import CHECKPOINT_HELP, SHA256_HELP

log = logging.getLogger(__name__)



def register(subparsers: argparse._SubParsersAction) -> None:
    """Adds the ``evaluate`` sub-command (its heavy imports happen when it runs)."""
    parser = subparsers.add_parser(
        "evaluate",
        help="score a checkpoint or a folder of prediction PNGs (both protocols, CIs, per-video CSV, table)",
        description="Score a flanet checkpoint (--checkpoint) or prediction PNGs of any method (--pred-dir, "
        "<pred>/<video id>/<frame stem>.png, probability x 255) against the masks of a data set. Writes "
        "metrics.json, per_video.csv, per_frame.csv, table.md and worst_frames/ into --out. See docs/metrics.md.",
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--checkpoint", help=f"flanet checkpoint (.pt) to run over the split: {CHECKPOINT_HELP}")
    source.add_argument("--pred-dir", type=Path, help="folder of prediction PNGs to score")
    parser.add_argument("--sha256", help=SHA256_HELP)
    parser.add_argument("--data", type=Path, required=True, help="data set root (any layout `flanet data check` reads)")
    parser.add_argument("--split", default="test", help="split to score, or 'all' (default: test; a set without split "
                        "lists: the test videos the checkpoint's run held out, else an error)")
    parser.add_argument("--allow-seen", action="store_true", help="score videos the checkpoint was trained or chosen "
                        "on (refused by default; table.md then says it is not a held-out score)")
    parser.add_argument("--out", type=Path, help="output folder (default: flanet-eval/<name>_<split>)")
    parser.add_argument("--name", help="method name in table.md (default: model name or prediction folder name)")
    parser.add_argument("--save-pred", action="store_true", help="also write probability PNGs to <out>/predictions")
    parser.add_argument("--resize-pred", action="store_true", help="resize predictions of the wrong size (as the VPS toolbox does) instead of failing")
    parser.add_argument("--image-size", type=image_size, help=f"model input size (default: the checkpoint's training size, else {IMAGE_SIZE})")
    parser.add_argument("--mode", choices=("auto", "clips", "stream"), default="auto",
                        help="clips: batched clips; stream: FLA-Net encodes each frame once; auto: fewer encoder passes")
    parser.add_argument("--batch-size", type=int, default=8, help="clips (clips mode) or frames (stream mode) per forward pass (default: 8)")
    parser.add_argument("--num-workers", type=int, default=2, help="data loading workers (default: 2)")
    parser.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--jobs", type=int, default=default_jobs(),
                        help=f"processes scoring the VPS protocol in parallel (default here: {default_jobs()})")
    parser.add_argument("--pixel-spacing", type=pixel_spacing, metavar="MM[,MM]",
                        help="millimetres per pixel (one value, or ROW_MM,COLUMN_MM) of every video without a "
                        "calibration of its own (DICOM cines carry theirs), for the centre error in mm")
    parser.add_argument("--blank-outside-regions", action="store_true",
                        help="viewer.html and worst_frames/: blank everything outside the ultrasound regions of every "
                        "video, not only DICOM files declaring burned-in annotation (a video without regions is shown "
                        "black, its masks drawn; see --keep-region)")
    parser.add_argument("--keep-region", type=keep_region, metavar="X0,Y0,X1,Y1",
                        help="viewer.html and worst_frames/: show only this rectangle of frame pixels (inclusive) of "
                        "every video without ultrasound regions of its own (burned-in names, IDs, dates blanked)")
    parser.add_argument("--threshold", type=unit_interval, default=0.5, help="threshold of the standard protocol (default: 0.5)")
    parser.add_argument("--worst", type=int, default=8, help="number of worst frames drawn (default: 8)")
    parser.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (default: 2000)")
    parser.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")
    parser.set_defaults(func=run_evaluate)


def _default_out(args: argparse.Namespace) -> Path:
    name = args.name or (Path(args.checkpoint).stem if args.checkpoint else args.pred_dir.resolve().name)
    return Path("flanet-eval") / f"{name}_{args.split}"


def print_summary(metrics: dict, out: Path) -> None:
    """Headline scores with their intervals, then where the report is."""
    from flanet.evaluation.report import format_cell
    from flanet.metrics.names import HEADLINE

    for key in HEADLINE:
        print(f"{key:12s} {format_cell(metrics, key)}")
    print(diagnosis_summary(metrics.get("diagnosis")))
    print(f"{metrics['num_frames']} frames of {metrics['num_videos']} videos; report in {out}")


def diagnosis_summary(section: dict | None) -> str:
    """One line per diagnosed label (``pathology AUROC 0.812 [0.700, 0.910], 40 videos``), or why there is none."""
    if not section or "not_applicable" in section:
        return f"diagnosis    not applicable: {(section or {}).get('not_applicable', 'no diagnosis')}"
    lines = []
    for label, summary in section["labels"].items():
        if "not_applicable" in summary:
            lines.append(f"diagnosis    {label}: not applicable ({summary['not_applicable']})")
            continue
        interval = summary.get("auroc_ci")
        shown = f" [{interval[0]:.3f}, {interval[1]:.3f}]" if interval else ""
        lines.append(f"diagnosis    {label} AUROC {summary['auroc']:.3f}{shown}, balanced accuracy "
                     f"{summary['balanced_accuracy']:.3f}, {summary['videos']} videos")
    return "\n".join(lines)


def run_evaluate(args: argparse.Namespace) -> int:
    """Entry point of ``flanet evaluate``; errors reach :func:`flanet.cli.main` (exit status 2 bad input)."""
    from flanet.evaluation.evaluate import (
        EvaluationSettings,
        PredictionFolderError,
        evaluate_checkpoint,
        evaluate_prediction_folder,
    )
    from flanet.evaluation.shown_frames import Blanking
    from flanet.models.hub import resolve_checkpoint

    out = args.out or _default_out(args)
    settings = EvaluationSettings(args.threshold, args.worst, args.resamples, args.seed, not args.no_progress, args.jobs,
                                  Blanking(args.blank_outside_regions, args.keep_region))
    try:
        if args.checkpoint is not None:
            result = evaluate_checkpoint(
                resolve_checkpoint(args.checkpoint, args.sha256), args.data, args.split, out, image_size=args.image_size, device=args.device,
                batch_size=args.batch_size, num_workers=args.num_workers, save_pred=args.save_pred,
                method=args.name, mode=args.mode, settings=settings, pixel_spacing=args.pixel_spacing,
                allow_seen=args.allow_seen,
            )
        else:
            if args.save_pred:
                log.warning("--save-pred has no effect with --pred-dir")
            result, _ = evaluate_prediction_folder(
                args.pred_dir, args.data, args.split, out, resize=args.resize_pred, method=args.name, settings=settings,
                pixel_spacing=args.pixel_spacing,
            )
    except PredictionFolderError as error:
        if error.check.wrong_size and not args.resize_pred:
            raise UsageError(f"{error}; use --resize-pred to resize predictions to the ground-truth size") from error
        raise
    print_summary(result.metrics, out)
    return 0
