"""The ``isometry`` command.

Each subcommand lives in its own module ``isometry.commands.<name>`` defining
``register(subparsers)``, which adds a parser whose default ``func(args) -> int``
runs it. Bad input (a ``ValueError`` or an argparse error) prints one line on
stderr and exits with status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys

COMMANDS = ["critical", "phase", "spectrum", "empirical", "init_report", "train", "reproduce", "sweep"]


class UsageError(ValueError):
    """Bad command-line input."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="isometry", description="Dynamical isometry in deep networks.")
    from . import __version__

    parser.add_argument("--version", action="version", version=f"isometry {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        modname = f"isometry.commands.{name}"
        if importlib.util.find_spec(modname) is None:
            continue
        importlib.import_module(modname).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, OSError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        if not msg.startswith("isometry"):
            msg = f"isometry: error: {msg}"
        print(msg, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("isometry: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
