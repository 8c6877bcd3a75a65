"""The ``isometry`` command.

Each subcommand lives in its own module ``isometry.commands.<name>`` defining
``register(subparsers)``, which adds a parser whose default ``func(args) -> int``
runs it. Every parser shows the defaults of its options in ``--help``. Bad input
(an argparse error, or a ``ValueError``/``TypeError`` raised by the library, an
``OSError``, a missing optional dependency) prints one line on stderr and exits
with status 2, never a traceback; a closed output pipe (``| head``) ends quietly.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import sys

COMMANDS = ["critical", "phase", "spectrum", "empirical", "init_report", "train", "reproduce", "sweep"]


class UsageError(ValueError):
    """Bad command-line input."""


class _DefaultsMixin(argparse.ArgumentDefaultsHelpFormatter):
    """Appends ``(default: X)`` to every option's help, except where there is nothing to show
    (no default, a flag that is off by default) or the help already says it."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "%(default)" in text or action.default is None or action.default is argparse.SUPPRESS:
            return text
        if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            return f"{text} (default: %(default)s)"
        return text


def _with_defaults(formatter_class: type) -> type:
    if issubclass(formatter_class, _DefaultsMixin):
        return formatter_class
    return type(f"Defaults{formatter_class.__name__}", (_DefaultsMixin, formatter_class), {})


class _Parser(argparse.ArgumentParser):
    """The parser of ``isometry`` and of every subcommand: errors are one line (exit 2) and every
    ``--help`` shows the defaults, whatever formatter a subcommand asks for."""

    def __init__(self, *args, **kwargs):
        kwargs["formatter_class"] = _with_defaults(kwargs.get("formatter_class", argparse.HelpFormatter))
        super().__init__(*args, **kwargs)

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


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip()
    msg = text.splitlines()[0] if text else type(exc).__name__
    return msg if msg.startswith("isometry") else f"isometry: error: {msg}"


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except (OSError, ValueError):  # pragma: no cover  (stdout without a file descriptor)
            pass
        return 0
    except (ValueError, TypeError, OSError, ImportError) as exc:
        print(_one_line(exc), file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("isometry: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
