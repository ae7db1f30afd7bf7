"""Command-line entry point: ``flanet <command> ...``.

Each command lives next to the code it drives and exposes ``register(subparsers)``;
this module only assembles them, so ``flanet --help`` lists every command.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from flanet import __version__

# Modules that each define ``register(subparsers: argparse._SubParsersAction) -> None``.
COMMAND_MODULES: tuple[str, ...] = (
    "flanet.models.commands",
    "flanet.data.commands",
    "flanet.training.commands",
    "flanet.evaluation.commands",
    "flanet.inference.commands",
    "flanet.demo.commands",
)


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered sub-command."""
    parser = argparse.ArgumentParser(
        prog="flanet",
        description="FLA-Net: lesion segmentation in ultrasound and endoscopy videos "
        "(Lin et al., MICCAI 2023).",
    )
    parser.add_argument("--version", action="version", version=f"flanet {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
