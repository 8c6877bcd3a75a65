"""The ``isometry`` command.

Each subcommand lives in its own module ``isometry.commands.<name>`` defining
``register(subparsers)``, which adds a parser whose default ``func(args) -> int``
runs it. Every parser shows the defaults of its options in ``--help``.

Exit status and errors (every verb):

* 0: done. A closed output pipe (``| head``) also ends quietly with 0.
* 1: the work ran but did not succeed as asked: a training run failed (``train``, ``sweep``;
  the same command retries it), a check failed under ``reproduce --strict``, or an internal
  error (a bug in isometry: one line naming the exception, asking to rerun with ``--debug``).
* 2: bad input or environment, one line on stderr, never a traceback: argument errors,
  ``ValueError``/``TypeError`` from the library, unreadable or corrupt files (``OSError``,
  ``UnicodeDecodeError``, invalid JSON, pickle/``.npz`` errors, ``EOFError``), a missing optional
  dependency, and requests too large for the machine (``MemoryError``, ``OverflowError``,
  ``RecursionError``).
* 130: interrupted (Ctrl-C), quietly.

``isometry --debug VERB ...`` shows the Python traceback instead of the one-line message.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import os
import pickle
import sys
import zipfile

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
    parser.add_argument("--debug", action="store_true",
                        help="show the Python traceback of an error instead of a one-line message")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in COMMANDS:
        modname = f"isometry.commands.{name}"
        if importlib.util.find_spec(modname) is None:
            continue
        importlib.import_module(modname).register(sub)
    return parser


# what a user can cause: bad input, bad or corrupt files, a full disk, requests too large for the machine
USER_ERRORS = (ValueError, TypeError, OSError, ImportError, EOFError, MemoryError, OverflowError, RecursionError,
               pickle.UnpicklingError, zipfile.BadZipFile)


def _one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line, prefixed ``isometry: error:``."""
    text = " ".join(str(exc).split())
    if isinstance(exc, MemoryError):
        text = f"out of memory{': ' + text if text else ''} (use smaller sizes)"
    elif isinstance(exc, RecursionError):
        text = f"input too deeply nested ({text or 'maximum recursion depth exceeded'})"
    elif isinstance(exc, UnicodeDecodeError):
        text = f"a file is not UTF-8 text ({text})"
    elif isinstance(exc, EOFError):
        text = f"a file ended early (truncated?){': ' + text if text else ''}"
    elif isinstance(exc, (pickle.UnpicklingError, zipfile.BadZipFile)):
        text = f"a file is corrupt: {text or type(exc).__name__}"
    msg = text or type(exc).__name__
    if len(msg) > 2000:
        msg = msg[:2000] + " ..."
    return msg if msg.startswith("isometry") else f"isometry: error: {msg}"


def _debug_requested(argv: list[str]) -> bool:
    """Whether ``--debug`` comes before the subcommand (``isometry --debug VERB ...``)."""
    for a in argv:
        if a == "--debug":
            return True
        if not a.startswith("-"):
            return False
    return False


def _quiet_stdout() -> None:
    """Point stdout at /dev/null (after a closed pipe), so that flushing at exit does not fail again."""
    try:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # pragma: no cover  (stdout without a file descriptor)
        pass


def main(argv: list[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status (see the module)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = _debug_requested(argv)
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        if not getattr(args, "func", None):
            parser.print_help()
            return 2
        code = int(args.func(args) or 0)
        sys.stdout.flush()
        return code
    except BrokenPipeError:  # the reader went away (| head): stop quietly
        _quiet_stdout()
        return 0
    except KeyboardInterrupt:
        if debug:
            raise
        return 130
    except USER_ERRORS as exc:
        if debug:
            raise
        print(_one_line(exc), file=sys.stderr)
        return 2
    except Exception as exc:  # noqa: BLE001  (a bug in isometry: one line unless --debug)
        if debug:
            raise
        where = " ".join(str(exc).split())[:300]
        print(f"isometry: internal error: {type(exc).__name__}{': ' + where if where else ''} "
              f"(a bug in isometry; rerun with 'isometry --debug ...' for the traceback and report it)", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
