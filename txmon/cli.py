"""The `txmon` command. Each package registers its own subcommands under the
`txmon.commands` entry point group (pyproject.toml), so this base module names none of
the layers above it; heavy imports wait until a subcommand runs, so `txmon --help` stays
instant."""

from __future__ import annotations

import argparse
import logging
import sys
from importlib.metadata import entry_points

from txmon import __version__
from txmon.errors import UserError

COMMAND_GROUP = "txmon.commands"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="txmon", description="Real-time transaction monitoring on Kafka."
    )
    parser.add_argument("--version", action="version", version=f"txmon {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    commands = entry_points(group=COMMAND_GROUP)
    if not commands:
        raise UserError(f"no {COMMAND_GROUP} entry points: is txmon installed (pip install -e .)?")
    for command in sorted(commands, key=lambda c: c.name):
        command.load().register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:  # a registry without entry points is the user's to fix
        args = build_parser().parse_args(argv)
    except UserError as exc:
        print(f"txmon: error: {exc}", file=sys.stderr)
        return 2
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.func(args) or 0)
    except UserError as exc:
        print(f"txmon {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
