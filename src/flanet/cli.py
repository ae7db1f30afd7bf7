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
from flanet.errors import BAD_INPUT, report

# Modules that each define ``register(subparsers: argparse._SubParsersAction) -> None``.
COMMAND_MODULES: tuple[str, ...] = (
    "flanet.models.commands",
    "flanet.models.weights_commands",
    "flanet.data.commands",
    "flanet.training.commands",
    "flanet.evaluation.commands",
    "flanet.experiments.compare",
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
    parser.set_defaults(streaming=False)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in COMMAND_MODULES:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the process exit status.

    A command that raises ends with one line ``flanet <command>: error: <what> (<file or key>)``
    and status 2 (bad input or usage) or 1 (a run that failed), see :mod:`flanet.errors`; with
    ``-v`` the traceback is printed first.
    """
    from flanet.threads import configure_process

    parser = build_parser()
    args = parser.parse_args(argv)
    # thread count and OpenMP spinning, before the command loads torch (parsing does not): streaming
    # commands (streaming=True) adapt their thread count to the free CPUs instead of capping spinning
    configure_process(cap_spinning=not args.streaming)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(levelname)s %(name)s: %(message)s",
    )
    if not hasattr(args, "func"):
        parser.print_help()
        return BAD_INPUT
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"flanet {args.command}: interrupted", file=sys.stderr)
        return 130
    except Exception as error:  # noqa: BLE001 - every failure ends in the one error contract
        return report(args.command, error, args.verbose)


if __name__ == "__main__":
    sys.exit(main())
