"""``flanet train``: train a model from a recipe, or resume a run."""

from __future__ import annotations

import argparse
import logging

from flanet.errors import UsageError
from flanet.training.config import shipped_configs

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train`` sub-command."""
    parser = subparsers.add_parser(
        "train",
        help="train FLA-Net, an ablation variant or a baseline (Lightning; resumable, multi-GPU)",
        description="Train a model. Example: flanet train --config buv-paper data.root=/data/buv "
        "trainer.devices=4. Every key is described in docs/training.md.",
    )
    parser.add_argument(
        "--config",
        help=f"shipped recipe ({', '.join(shipped_configs())}) or YAML file; "
        "optional with --resume (the run's config.yaml)",
    )
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="dotted overrides typed as YAML, e.g. optim.lr=1e-4 trainer.max_epochs=50")
    parser.add_argument("--task", choices=("segmentation", "diagnosis"), default=None,
                        help="diagnosis: train the video diagnosis head alone on the frozen model of "
                        "model.init_from=CHECKPOINT (the same as the override task=diagnosis; docs/training.md)")
    parser.add_argument("--resume", metavar="RUN_DIR_OR_CKPT",
                        help="continue a run from its folder or checkpoints/resume.ckpt")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run ``flanet train``; prints the run folder. Errors reach :func:`flanet.cli.main`
    (exit status 2 for bad input, 1 for a stopped run)."""
    from flanet.training.run import global_rank, train

    if args.config is None and args.resume is None:
        raise UsageError("give --config RECIPE_OR_FILE (or --resume RUN_DIR)")
    overrides = [*args.overrides, *([f"task={args.task}"] if args.task else [])]
    run_dir = train(args.config, overrides, resume=args.resume)
    if global_rank() == 0:
        print(run_dir)
    return 0
