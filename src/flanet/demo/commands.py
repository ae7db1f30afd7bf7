"""``flanet demo``: train and compare FLA-Net and UNet on synthetic videos, write a visual report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)

DEFAULT_STEPS = 1350  # = flanet.demo.pipeline.DEFAULT_STEPS (kept here so --help imports no torch; tested)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``demo`` sub-command."""
    parser = subparsers.add_parser(
        "demo",
        help="end-to-end demo on synthetic ultrasound videos: train FLA-Net and UNet, evaluate, stream, report",
        description="Generate synthetic breast-ultrasound videos, train FLA-Net and the image-only UNet under "
        "the same number of steps, evaluate both on held-out videos (95% bootstrap intervals), stream one test "
        "video and write report.html / report.md / metrics.json. A seed gives the same numbers on every "
        "machine. About 10 minutes on 2 CPU cores, no GPU, no download. See docs/demo.md.",
    )
    parser.add_argument("--out", type=Path, default=Path("flanet-demo"), help="output folder (default: flanet-demo)")
    parser.add_argument("--steps", type=int, default=DEFAULT_STEPS,
                        help=f"optimisation steps of each model (default {DEFAULT_STEPS}, about 10 minutes on 2 cores; "
                        "the expected time on this machine is printed before training)")
    parser.add_argument("--seed", type=int, default=0, help="seed of data, training and bootstrap (default 0)")
    parser.add_argument("--force", action="store_true", help="replace an output folder written by an earlier demo")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``flanet demo``; exit status 2 for bad input, 1 when training stops on a problem."""
    from flanet.data import DataError
    from flanet.demo.pipeline import DemoSettings, run_demo
    from flanet.training import ConfigError, TrainingError

    if args.steps < 1:
        log.error("--steps must be at least 1, got %s", args.steps)
        return 2
    try:
        run_demo(args.out, DemoSettings(steps=args.steps, seed=args.seed), force=args.force)
    except (FileExistsError, ConfigError, DataError) as error:
        log.error("%s", error)
        return 2
    except TrainingError as error:
        log.error("%s", error)
        return 1
    return 0
