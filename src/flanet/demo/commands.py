"""``flanet demo``: train and compare FLA-Net and UNet on synthetic videos, write a visual report."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from flanet.errors import UsageError

log = logging.getLogger(__name__)

DEFAULT_STEPS = 990  # = flanet.demo.pipeline.DEFAULT_STEPS (kept here so --help imports no torch; tested)


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
    """Run ``flanet demo``; errors reach :func:`flanet.cli.main` (2 bad input, 1 training stopped)."""
    from flanet.demo.pipeline import DemoSettings, run_demo

    if args.steps < 1:
        raise UsageError(f"--steps must be at least 1, got {args.steps}")
    run_demo(args.out, DemoSettings(steps=args.steps, seed=args.seed), force=args.force)
    return 0
