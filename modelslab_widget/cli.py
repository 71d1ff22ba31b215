"""The ``modelslab-widget`` command."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="modelslab-widget", description="Watch ModelsLab workflow runs."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "simulate",
        help="serve a local ModelsLab Workflows API (for demos and tests)",
        add_help=False,  # the simulator parses its own options, --help included
    )
    args, rest = parser.parse_known_args(argv)
    if args.command == "simulate":
        from .simulator import main as simulate

        return simulate(rest)
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
